"""The htmx dashboard: full pages, or fragments when HX-Request asks."""

from __future__ import annotations

from quart import Blueprint, Response, jsonify

from taskdash.errors import TaskdashError

pages = Blueprint("pages", __name__)


async def render_error_page(error: TaskdashError) -> Response:
    """How a TaskdashError raised by a page route is shown (the dashboard issue replaces this)."""
    response = jsonify(error.to_json())
    response.status_code = error.status
    return response
