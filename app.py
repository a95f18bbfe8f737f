"""ASGI entry point: `hypercorn app:app`."""

from taskdash import create_app

app = create_app()
