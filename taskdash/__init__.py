"""taskdash: run Python and shell scripts in Docker containers and watch them live."""

from __future__ import annotations

import contextlib
import logging

from quart import Quart, Response, jsonify, request
from quart_schema import QuartSchema, RequestSchemaValidationError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from taskdash.core.config import Settings, load_settings
from taskdash.core.db import close_database, open_database
from taskdash.core.errors import TaskdashError
from taskdash.engine.docker import DockerRunner
from taskdash.engine.runs import RunManager
from taskdash.logs.hub import LogHub
from taskdash.scheduling.scheduler import Scheduler
from taskdash.services import Services

log = logging.getLogger("taskdash")


def create_app(settings: Settings | None = None) -> Quart:
    settings = settings or load_settings()
    app = Quart(__name__, template_folder="../templates", static_folder="../static")
    # The whole request may hold the script and its requirements, plus form overhead.
    app.config["MAX_CONTENT_LENGTH"] = 2 * settings.max_script_bytes + 64 * 1024
    app.config["TASKDASH_SETTINGS"] = settings
    QuartSchema(
        app,
        openapi_path="/openapi.json",
        swagger_ui_path=None,
        redoc_ui_path=None,
        scalar_ui_path=None,
        info={"title": "taskdash", "version": "1.0"},
    )
    from taskdash.web.api import api
    from taskdash.web.pages import pages
    from taskdash.web.schedules import schedules
    from taskdash.web.streams import streams

    # Registration order matters only for `GET /<task_id>`, which must come after the pages.
    app.register_blueprint(pages)
    app.register_blueprint(streams)
    app.register_blueprint(schedules)
    app.register_blueprint(api)
    register_error_handlers(app)
    register_lifecycle(app, settings)
    return app


def error_response(error: TaskdashError) -> Response:
    response = jsonify(error.to_json())
    response.status_code = error.status
    return response


def browser_asks() -> bool:
    """Accept prefers HTML to JSON (browsers do; curl's */* and API clients do not)."""
    accepted = request.accept_mimetypes
    return accepted.quality("text/html") > accepted.quality("application/json")


def register_error_handlers(app: Quart) -> None:
    """The one place where exceptions become HTTP responses."""

    @app.errorhandler(TaskdashError)
    async def handle_taskdash_error(error: TaskdashError) -> Response:
        if request.blueprint == "pages":
            from taskdash.web.pages import render_error_page

            return await render_error_page(error)
        return error_response(error)

    @app.errorhandler(RequestSchemaValidationError)
    async def handle_validation_error(error: RequestSchemaValidationError) -> Response:
        return error_response(TaskdashError(f"invalid request: {error.validation_error}"))

    @app.errorhandler(RequestEntityTooLarge)
    async def handle_too_large(_error: RequestEntityTooLarge) -> Response:
        limit = app.config["MAX_CONTENT_LENGTH"]
        return error_response(
            TaskdashError(
                f"the request is larger than the limit of {limit} bytes: scripts may be at most "
                f"{app.config['TASKDASH_SETTINGS'].max_script_bytes} bytes",
                code="payload_too_large",
                status=413,
            )
        )

    @app.errorhandler(HTTPException)
    async def handle_http_error(error: HTTPException) -> Response:
        status = error.code or 500
        message = error.description or error.name
        if status == 404:
            message = f"no such endpoint: {request.method} {request.path}"
        elif status == 405:
            message = f"{request.method} is not allowed on {request.path}"
        code = error.name.lower().replace(" ", "_")
        problem = TaskdashError(message, code=code, status=status)
        if request.blueprint is None and browser_asks():
            # No route matched, and a person typed or followed the URL: answer a page.
            from taskdash.web.pages import render_error_page

            return await render_error_page(problem)
        return error_response(problem)

    @app.errorhandler(Exception)
    async def handle_unexpected(error: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path, exc_info=error)
        return error_response(
            TaskdashError("internal server error; see the server log", code="internal", status=500)
        )


def register_lifecycle(app: Quart, settings: Settings) -> None:
    """Start services in order; the exit stack closes them in reverse, each even if one fails."""
    shutdown = contextlib.AsyncExitStack()

    @app.before_serving
    async def start_services() -> None:
        database = await open_database(settings)
        shutdown.push_async_callback(close_database, database)
        runner = DockerRunner(settings.docker_url)
        await runner.open()
        shutdown.push_async_callback(runner.close)
        hub = LogHub(settings.logs_dir, settings.log_max_bytes)
        runs = RunManager(settings, runner, hub)
        await report_images(runner, settings)
        await runs.start()
        shutdown.push_async_callback(runs.close)
        scheduler = Scheduler(settings, runs)
        await scheduler.start()
        shutdown.push_async_callback(scheduler.close)
        app.extensions["taskdash"] = Services(
            settings=settings,
            database=database,
            runner=runner,
            hub=hub,
            runs=runs,
            scheduler=scheduler,
        )

    @app.after_serving
    async def stop_services() -> None:
        app.extensions.pop("taskdash", None)
        await shutdown.aclose()


async def report_images(runner: DockerRunner, settings: Settings) -> None:
    """Say at start-up which default images are missing, so the first run's error is no surprise."""
    try:
        await runner.ping()
    except TaskdashError as exc:
        log.warning("%s: runs will fail until it answers (make setup starts it)", exc.message)
        return
    for image in (settings.python_image, settings.shell_image):
        if await runner.image_info(image) is None:
            log.warning("image %s is missing: run `make images` to build it", image)
