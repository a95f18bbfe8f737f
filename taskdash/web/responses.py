"""Building responses: JSON for the API, full pages or htmx fragments for the dashboard."""

from __future__ import annotations

from typing import Any

from quart import Response, jsonify, render_template, request


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A pydantic model, a list of them, or plain JSON data."""
    if hasattr(body, "model_dump"):
        body = body.model_dump(mode="json")
    elif isinstance(body, list):
        body = [item.model_dump(mode="json") for item in body]
    response = jsonify(body)
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def is_htmx() -> bool:
    """An htmx request wants a fragment, except when it restores history from the server."""
    headers = request.headers
    return headers.get("HX-Request") == "true" and "HX-History-Restore-Request" not in headers


def browser_asks() -> bool:
    """Accept prefers HTML to JSON (browsers do; curl's */* and API clients do not)."""
    accepted = request.accept_mimetypes
    return accepted.quality("text/html") > accepted.quality("application/json")


async def page(full: str, fragment_name: str, status: int = 200, **context: Any) -> Response:
    """The full page, or only its fragment for htmx; both come from the same partials."""
    body = await render_template(fragment_name if is_htmx() else full, **context)
    response = Response(body, status=status, content_type="text/html; charset=utf-8")
    response.headers["Vary"] = "HX-Request"
    return response


async def fragment(template: str, status: int = 200, **context: Any) -> Response:
    body = await render_template(template, **context)
    return Response(body, status=status, content_type="text/html; charset=utf-8")


def redirect_to(url: str) -> Response:
    """htmx follows HX-Redirect with a full navigation; a plain form gets a 303."""
    if is_htmx():
        return Response("", status=200, headers={"HX-Redirect": url})
    return Response("", status=303, headers={"Location": url})
