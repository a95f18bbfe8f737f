"""The app's services, as a request sees them."""

from __future__ import annotations

from quart import current_app

from taskdash.services import Services


def services() -> Services:
    found: Services = current_app.extensions["taskdash"]
    return found
