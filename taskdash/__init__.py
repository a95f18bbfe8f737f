"""taskdash: run Python and shell scripts in Docker containers and watch them live."""

from __future__ import annotations

import contextlib

from quart import Quart
from quart_schema import QuartSchema

from taskdash.core.config import MIB, Settings, load_settings
from taskdash.core.crypto import Keys, load_keys
from taskdash.services import open_services
from taskdash.web.account import account
from taskdash.web.api import api
from taskdash.web.auth import register_auth
from taskdash.web.body_budget import BodyBudget
from taskdash.web.errors import register_error_handlers
from taskdash.web.filters import register_filters
from taskdash.web.headers import register_headers
from taskdash.web.pages import pages
from taskdash.web.schedules import schedules
from taskdash.web.schemas import ApiDocument
from taskdash.web.storage import storage
from taskdash.web.streams import streams


def create_app(settings: Settings | None = None) -> Quart:
    settings = settings or load_settings()
    app = Quart(__name__, template_folder="../templates", static_folder="../static")
    # The whole request may hold the script and its requirements, plus form overhead; a
    # pasted script is one form field.
    app.config["MAX_CONTENT_LENGTH"] = 2 * settings.max_script_bytes + 64 * 1024
    app.config["MAX_FORM_MEMORY_SIZE"] = settings.max_script_bytes + 64 * 1024
    app.config["BODY_TIMEOUT"] = settings.body_timeout_seconds
    app.asgi_app = BodyBudget(  # type: ignore[method-assign]
        app.asgi_app,
        budget=settings.body_buffer_mb * MIB,
        limit=app.config["MAX_CONTENT_LENGTH"],
        wait_seconds=settings.body_timeout_seconds,
    )
    QuartSchema(
        app,
        openapi_path="/openapi.json",
        swagger_ui_path=None,
        redoc_ui_path=None,
        scalar_ui_path=None,
        info={"title": "taskdash", "version": "1.0"},
        openapi_provider_class=ApiDocument,
    )
    keys = load_keys(settings)
    register_auth(app, keys.session_key, int(settings.session_hours * 3600))
    register_headers(app)
    # Registration order matters only for `GET /<task_id>`, which must come after the pages.
    app.register_blueprint(account)
    app.register_blueprint(pages)
    app.register_blueprint(streams)
    app.register_blueprint(schedules)
    app.register_blueprint(storage)
    app.register_blueprint(api)
    register_filters(app)
    register_error_handlers(app)
    register_lifecycle(app, settings, keys)
    return app


def register_lifecycle(app: Quart, settings: Settings, keys: Keys) -> None:
    """Open the services before serving; close them in reverse after, each even if one fails."""
    shutdown = contextlib.AsyncExitStack()

    @app.before_serving
    async def start_services() -> None:
        app.extensions["taskdash"] = await open_services(settings, keys, shutdown)

    @app.after_serving
    async def stop_services() -> None:
        app.extensions.pop("taskdash", None)
        await shutdown.aclose()
