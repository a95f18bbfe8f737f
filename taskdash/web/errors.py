"""The one place where exceptions become HTTP responses.

The API answers the one JSON error shape. A dashboard page answers the error page, or for
htmx a message in #flash; a dashboard form that declared how it shows its own errors
(`shows_errors`) is answered with itself, filled in, and the message next to it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from quart import Quart, Response, current_app, g, request
from quart_schema import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from taskdash.core.errors import TaskdashError, Unauthenticated
from taskdash.web.auth import PUBLIC, required_role
from taskdash.web.forms import too_large
from taskdash.web.responses import browser_asks, fragment, is_htmx, json_response, page

log = logging.getLogger("taskdash")

ErrorReply = Callable[[TaskdashError], Awaitable[Response | None]]
View = TypeVar("View", bound=Callable[..., Awaitable[Any]])
DASHBOARD = {"pages", "account"}


def shows_errors(reply: ErrorReply) -> Callable[[View], View]:
    """Declare how a dashboard route shows its TaskdashErrors (None: as every page does)."""

    def decorate(view: View) -> View:
        @wraps(view)
        async def declared(*args: Any, **kwargs: Any) -> Any:
            g.error_reply = reply
            return await view(*args, **kwargs)

        return declared  # type: ignore[return-value]

    return decorate


def error_json(error: TaskdashError) -> Response:
    return json_response(error.to_json(), error.status, error.headers)


async def error_page(error: TaskdashError) -> Response:
    """The error page, or for htmx the message swapped into #flash."""
    if is_htmx():
        response = await fragment("_error.html", error.status, error=error)
        response.headers["HX-Retarget"] = "#flash"
        response.headers["HX-Reswap"] = "innerHTML"
        return response
    return await page("error.html", "_error.html", error.status, error=error)


def to_login() -> Response:
    """A person who is not logged in goes to the login page, and comes back after."""
    here = request.headers.get("HX-Current-URL") if is_htmx() else request.full_path
    path = urlsplit(here or "/")
    target = quote(path.path + (f"?{path.query}" if path.query else ""), safe="/")
    if is_htmx():
        return Response("", status=401, headers={"HX-Redirect": f"/login?next={target}"})
    return Response("", status=303, headers={"Location": f"/login?next={target}"})


async def answer(error: TaskdashError) -> Response:
    if request.blueprint not in DASHBOARD:
        return error_json(error)
    if isinstance(error, Unauthenticated) and not is_public_route():
        return to_login()
    reply: ErrorReply | None = g.get("error_reply")
    if reply is not None and (declared := await reply(error)) is not None:
        return declared
    response = await error_page(error)
    response.headers.update(error.headers)
    return response


def is_public_route() -> bool:
    """The login page itself, say: sending it there again would loop (a revoked bearer token
    is refused on every route)."""
    endpoint = request.endpoint
    return endpoint is not None and required_role(current_app, endpoint) == PUBLIC


def http_error(error: HTTPException) -> TaskdashError:
    status = error.code or 500
    message = error.description or error.name
    if status == 404:
        message = f"no such endpoint: {request.method} {request.path}"
    elif status == 405:
        message = f"{request.method} is not allowed on {request.path}"
    code = error.name.lower().replace(" ", "_")
    # A 405 must say which methods the path takes (RFC 9110), as werkzeug's own answer does.
    headers = {key: value for key, value in error.get_headers() if key == "Allow"}
    return TaskdashError(message, code=code, status=status, headers=headers)


def register_error_handlers(app: Quart) -> None:
    @app.errorhandler(TaskdashError)
    async def handle_taskdash_error(error: TaskdashError) -> Response:
        return await answer(error)

    @app.errorhandler(RequestSchemaValidationError)
    async def handle_validation_error(error: RequestSchemaValidationError) -> Response:
        return await answer(TaskdashError(f"invalid request: {error.validation_error}"))

    @app.errorhandler(RequestEntityTooLarge)
    async def handle_too_large(_error: RequestEntityTooLarge) -> Response:
        return await answer(too_large())

    @app.errorhandler(HTTPException)
    async def handle_http_error(error: HTTPException) -> Response:
        problem = http_error(error)
        if request.blueprint is None and browser_asks():
            # No route matched, and a person typed or followed the URL: answer a page.
            response = await error_page(problem)
            response.headers.update(problem.headers)
            return response
        return await answer(problem)

    @app.errorhandler(Exception)
    async def handle_unexpected(error: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path, exc_info=error)
        return error_json(
            TaskdashError("internal server error; see the server log", code="internal", status=500)
        )
