"""The error hierarchy: each error carries its HTTP status and a stable code (web/errors.py
turns them into responses)."""

from __future__ import annotations

from typing import Any


class TaskdashError(Exception):
    """An error a client can act on: it carries its HTTP status and a stable code."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        # Response headers the error's answer needs (Retry-After, WWW-Authenticate).
        self.headers = dict(headers or {})

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "status": self.status}}


class BadRequest(TaskdashError):
    status = 400
    code = "bad_request"


class Unauthenticated(TaskdashError):
    """No valid credentials: log in, or send `Authorization: Bearer <token>`."""

    status = 401
    code = "unauthenticated"


class Forbidden(TaskdashError):
    status = 403
    code = "forbidden"


class NotFound(TaskdashError):
    status = 404
    code = "not_found"


class Conflict(TaskdashError):
    status = 409
    code = "conflict"


class PayloadTooLarge(TaskdashError):
    status = 413
    code = "payload_too_large"


class TooManyRequests(TaskdashError):
    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: float, code: str | None = None):
        seconds = max(1, int(retry_after + 0.999))
        super().__init__(message, code=code, headers={"Retry-After": str(seconds)})
        self.retry_after = seconds


class UnsupportedMediaType(TaskdashError):
    status = 415
    code = "unsupported_media_type"


class ServiceUnavailable(TaskdashError):
    status = 503
    code = "unavailable"


class EngineError(TaskdashError):
    """The Docker engine refused or failed an operation."""

    status = 502
    code = "engine_error"
