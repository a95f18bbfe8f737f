"""Reading requests: form and JSON bodies, parsed and validated into the operations' inputs.

Every problem is a TaskdashError whose message says what to fix.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from typing import Any, Protocol, TypeVar
from uuid import UUID

from quart import request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import RequestEntityTooLarge

from taskdash.core.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from taskdash.core.models import OverlapPolicy, ScriptType
from taskdash.operations.tasks import NewTask
from taskdash.scheduling.schedules import ScheduleChange
from taskdash.web.context import services

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
CSRF_FIELD = "csrf_token"
SCHEDULE_KEYS = ("cron_expression", "timezone", "enabled", "overlap")
TRUE_WORDS = {"true", "1", "yes", "on"}
FALSE_WORDS = {"false", "0", "no", "off"}
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
N = TypeVar("N", int, float)
NUMBERS = {
    int: re.compile(r"[+-]?[0-9]+"),
    float: re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"),
}
MAX_NAME_CHARS = 200
MAX_FILENAME_CHARS = 255  # Task.script_filename's column
# Control (NUL, CR, ESC...) and format characters (bidi overrides, zero-width): not for a label.
HIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn"}


class Upload(Protocol):
    filename: str | None

    def read(self) -> bytes: ...


def parse_uuid(value: str, what: str = "task id") -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise BadRequest(
            f"{value!r} is not a valid {what}: expected a UUID such as "
            "'3f2c1d7e-8a9b-4c5d-9e0f-1a2b3c4d5e6f'",
            code="malformed_id",
        ) from None


def parse_bool(value: str | None, name: str, default: bool) -> bool:
    if value is None or value.strip() == "":
        return default
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise BadRequest(f"'{name}' must be true or false, not {value!r}")


def parse_number(value: str | None, name: str, kind: type[N], low: N, high: N) -> N | None:
    if value is None or value.strip() == "":
        return None
    # Plain decimal notation: int() and float() also read "1_000", "٣" and "inf".
    if not NUMBERS[kind].fullmatch(value.strip()):
        raise BadRequest(f"'{name}' must be a {kind.__name__}, not {value!r}")
    number = kind(value.strip())
    if not low <= number <= high:
        raise BadRequest(f"'{name}' must be between {low} and {high}, not {number}")
    return number


def parse_env(value: str | None, field: str = "env") -> dict[str, str]:
    """A JSON object of strings, or NAME=value lines (as the dashboard's text area sends)."""
    if value is None or value.strip() == "":
        return {}
    text = value.strip()
    data = parse_env_json(text, field) if text.startswith("{") else parse_env_lines(text, field)
    for key, item in data.items():
        if not ENV_NAME.match(key):
            raise BadRequest(f"'{field}' has an invalid variable name {key!r}")
        if not isinstance(item, str | int | float | bool):
            raise BadRequest(f"'{field}' value of {key!r} must be a string")
    return {key: str(item) for key, item in data.items()}


def parse_env_json(text: str, field: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"'{field}' must be a JSON object of strings: {exc.msg}") from None
    if not isinstance(data, dict):
        raise BadRequest(f'\'{field}\' must be a JSON object such as {{"NAME": "value"}}')
    return data


def parse_env_lines(text: str, field: str) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, equals, item = line.partition("=")
        if not equals:
            raise BadRequest(
                f"'{field}' line {number} must be NAME=value (or send a JSON object), "
                f"not {line.strip()[:40]!r}"
            )
        data[name.strip()] = item
    return data


def read_script(
    form: Mapping[str, str], files: Mapping[str, Upload], limit: int
) -> tuple[bytes, str]:
    """The script's bytes and file name, from the `file` upload or the `script` text field."""
    upload = files.get("file")
    if upload is not None and (upload.filename or ""):
        content = upload.read()
        filename = safe_filename(upload.filename or "")
    elif (form.get("script") or "").strip():
        content = (form.get("script") or "").replace("\r\n", "\n").encode()
        filename = ""
    else:
        raise BadRequest(
            "form field 'file' is required: attach the script as multipart/form-data "
            "(or send its text in the field 'script')",
            code="missing_file",
        )
    if len(content) > limit:
        raise PayloadTooLarge(
            f"the script is {len(content)} bytes; the limit is {limit} bytes "
            "(TASKDASH_MAX_SCRIPT_BYTES)"
        )
    if not content.strip():
        raise BadRequest("the script is empty: upload a file with some code in it")
    return content, filename


def safe_filename(name: str) -> str:
    """The upload's own name, kept only to be shown: its last path part, without control or
    format characters (NUL, bidi overrides), at most MAX_FILENAME_CHARS. No path derives from
    it: the script is always /job/main.py or /job/script.sh in the container."""
    base = re.split(r"[/\\]", name)[-1]
    shown = "".join(c for c in base if unicodedata.category(c) not in HIDDEN_CATEGORIES).strip()
    if shown in ("", ".", ".."):
        return ""
    if len(shown) <= MAX_FILENAME_CHARS:
        return shown
    stem, dot, extension = shown.rpartition(".")
    if dot and 0 < len(extension) < 16:
        return stem[: MAX_FILENAME_CHARS - len(extension) - 1] + dot + extension
    return shown[:MAX_FILENAME_CHARS]


def read_requirements(
    form: Mapping[str, str],
    files: Mapping[str, Upload],
    script_type: ScriptType,
    limit: int,
) -> str | None:
    upload = files.get("requirements")
    raw: bytes | None = None
    if upload is not None and (upload.filename or ""):
        raw = upload.read()
    elif (form.get("requirements") or "").strip():
        raw = (form.get("requirements") or "").encode()
    if raw is None or not raw.strip():
        return None
    if script_type is ScriptType.SHELL:
        raise BadRequest("'requirements' only applies to python tasks")
    if len(raw) > limit:
        raise PayloadTooLarge(f"requirements are {len(raw)} bytes; the limit is {limit} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("'requirements' must be UTF-8 text") from None
    if "\0" in text:
        raise BadRequest("'requirements' must be text, not binary")
    return text


def parse_new_task(
    script_type: ScriptType,
    form: Mapping[str, str],
    files: Mapping[str, Upload],
    limit: int,
) -> NewTask:
    unknown = set(files) - {"file", "requirements"}
    if unknown:
        raise BadRequest(f"unexpected file field(s): {', '.join(sorted(unknown))}")
    # The small fields first: a request refused for one of them never reads its files.
    name = (form.get("name") or "").strip()
    if len(name) > MAX_NAME_CHARS:
        raise BadRequest(f"'name' is longer than {MAX_NAME_CHARS} characters")
    image = (form.get("image") or "").strip() or None
    if image is not None and (len(image) > 255 or any(c.isspace() for c in image)):
        raise BadRequest(f"'image' is not a valid image name: {image!r}")
    upload = parse_bool(form.get("upload"), "upload", default=True)
    env = parse_env(form.get("env"))
    secret_env = parse_env(form.get("secret_env"), "secret_env")
    timeout_seconds = parse_number(
        form.get("timeout_seconds"), "timeout_seconds", float, 1.0, 7 * 24 * 3600.0
    )
    memory_mb = parse_number(form.get("memory_mb"), "memory_mb", int, 6, 1024 * 1024)
    cpus = parse_number(form.get("cpus"), "cpus", float, 0.01, 256.0)
    script, filename = read_script(form, files, limit)
    return NewTask(
        script_type=script_type,
        script=script,
        filename=filename,
        name=name or filename[:MAX_NAME_CHARS] or f"{script_type.value} script",
        upload=upload,
        requirements=read_requirements(form, files, script_type, limit),
        image=image,
        env=env,
        secret_env=secret_env,
        timeout_seconds=timeout_seconds,
        memory_mb=memory_mb,
        cpus=cpus,
    )


def parse_page(args: Mapping[str, Any], default_limit: int) -> tuple[int, int]:
    for name in ("limit", "offset"):
        if isinstance(args, MultiDict) and len(args.getlist(name)) > 1:
            raise BadRequest(f"'{name}' is given more than once")
        if args.get(name) is not None and not str(args.get(name)).strip():
            raise BadRequest(f"'{name}' is empty: give a whole number or leave it out")
    limit = parse_number(args.get("limit"), "limit", int, 1, 1000)
    offset = parse_number(args.get("offset"), "offset", int, 0, 10**12)
    return limit or default_limit, offset or 0


def parse_page_number(value: str | None) -> int:
    if value is None or value.strip() == "":
        return 1
    if not value.strip().isdigit() or int(value) < 1:
        raise BadRequest(f"'page' must be a whole number from 1, not {value!r}")
    return int(value)


def parse_script_type(value: str | None) -> ScriptType:
    try:
        return ScriptType((value or "").strip().lower())
    except ValueError:
        raise BadRequest(
            f"choose a script type: 'python' or 'shell' (got {value!r})", code="bad_script_type"
        ) from None


# request bodies ---------------------------------------------------------------------------


def has_body() -> bool:
    return bool(request.content_length) or "Transfer-Encoding" in request.headers


async def read_form() -> tuple[dict[str, str], dict[str, Any]]:
    """The submitted form fields and files; an empty body is an empty form."""
    if request.mimetype not in FORM_TYPES:
        if not has_body():
            return {}, {}
        raise UnsupportedMediaType(
            f"send this as multipart/form-data (got {request.mimetype or 'no content type'})"
        )
    try:
        form = await request.form
        files = await request.files
    except RequestEntityTooLarge:
        raise too_large() from None
    # The CSRF token was checked before the route ran; it is no field of the request.
    fields = {key: value for key, value in form.items() if key != CSRF_FIELD}
    return fields, dict(files.items())


def too_large() -> PayloadTooLarge:
    """The answer to a body over MAX_CONTENT_LENGTH (the app's error handler uses it too)."""
    limit = request.max_content_length
    script_limit = services().settings.max_script_bytes
    # The rest of the body is never read, so the server closes the connection after the
    # answer: saying so keeps a client from sending its next request into it.
    return PayloadTooLarge(
        f"the request is too large (over the limit of {limit} bytes): scripts and requirements "
        f"may be at most {script_limit} bytes each",
        headers={"Connection": "close"},
    )


async def read_fields() -> dict[str, Any]:
    """The request's fields, from a form or a JSON object; an empty body is no fields."""
    if request.mimetype == "application/json":
        return parse_json_object(await request.get_data())
    if request.mimetype in FORM_TYPES or not has_body():
        form, _files = await read_form()
        return form
    raise UnsupportedMediaType(
        f"send this as form data or JSON (got {request.mimetype or 'no content type'})"
    )


def parse_json_object(body: str | bytes) -> dict[str, Any]:
    # Not request.get_json: it decodes the body first, and invalid UTF-8 escapes its `silent`.
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise BadRequest('the JSON body must be an object such as {"cron_expression": ...}')
    return data


# schedules --------------------------------------------------------------------------------


def text_value(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"'{key}' must be a string, not {type(value).__name__}")
    return value.strip() or None


def bool_value(data: Mapping[str, Any], key: str) -> bool | None:
    value = data.get(key)
    if value is None or isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise BadRequest(f"'{key}' must be true or false, not {value!r}")
    return None if not value.strip() else parse_bool(value, key, default=True)


def overlap_value(data: Mapping[str, Any]) -> OverlapPolicy | None:
    value = text_value(data, "overlap")
    if value is None:
        return None
    try:
        return OverlapPolicy(value.lower())
    except ValueError:
        choices = ", ".join(policy.value for policy in OverlapPolicy)
        raise BadRequest(f"'overlap' must be one of {choices}, not {value!r}") from None


def parse_schedule_change(data: Mapping[str, Any]) -> ScheduleChange:
    unknown = sorted(set(data) - set(SCHEDULE_KEYS))
    if unknown:
        raise BadRequest(
            f"unexpected field(s): {', '.join(unknown)}; expected {', '.join(SCHEDULE_KEYS)}",
            code="unexpected_field",
        )
    return ScheduleChange(
        cron_expression=text_value(data, "cron_expression"),
        timezone=text_value(data, "timezone"),
        enabled=bool_value(data, "enabled"),
        overlap=overlap_value(data),
    )
