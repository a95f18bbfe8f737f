"""Server-sent event streams of run logs and status changes."""

from __future__ import annotations

from quart import Blueprint

streams = Blueprint("streams", __name__)
