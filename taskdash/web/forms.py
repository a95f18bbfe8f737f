"""Parse and validate submitted forms into plain values; every problem is a BadRequest."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar
from uuid import UUID

from taskdash.core.errors import BadRequest, PayloadTooLarge
from taskdash.core.models import ScriptType

TRUE_WORDS = {"true", "1", "yes", "on"}
FALSE_WORDS = {"false", "0", "no", "off"}
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
N = TypeVar("N", int, float)


class Upload(Protocol):
    filename: str | None

    def read(self) -> bytes: ...


@dataclass(frozen=True)
class NewTask:
    script_type: ScriptType
    script: bytes
    filename: str
    name: str
    upload: bool = True
    requirements: str | None = None
    image: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    timeout_seconds: float | None = None
    memory_mb: int | None = None
    cpus: float | None = None


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
    try:
        number = kind(value.strip())
    except ValueError:
        raise BadRequest(f"'{name}' must be a {kind.__name__}, not {value!r}") from None
    if not low <= number <= high:
        raise BadRequest(f"'{name}' must be between {low} and {high}, not {number}")
    return number


def parse_env(value: str | None) -> dict[str, str]:
    if value is None or value.strip() == "":
        return {}
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"'env' must be a JSON object of strings: {exc.msg}") from None
    if not isinstance(data, dict):
        raise BadRequest('\'env\' must be a JSON object such as {"NAME": "value"}')
    for key, item in data.items():
        if not ENV_NAME.match(key):
            raise BadRequest(f"'env' has an invalid variable name {key!r}")
        if not isinstance(item, str | int | float | bool):
            raise BadRequest(f"'env' value of {key!r} must be a string")
    return {key: str(item) for key, item in data.items()}


def read_script(
    form: Mapping[str, str], files: Mapping[str, Upload], limit: int
) -> tuple[bytes, str]:
    """The script's bytes and file name, from the `file` upload or the `script` text field."""
    upload = files.get("file")
    if upload is not None and (upload.filename or ""):
        content = upload.read()
        filename = upload.filename or "script"
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
    script, filename = read_script(form, files, limit)
    requirements = read_requirements(form, files, script_type, limit)
    name = (form.get("name") or "").strip() or filename or f"{script_type.value} script"
    if len(name) > 200:
        raise BadRequest("'name' is longer than 200 characters")
    image = (form.get("image") or "").strip() or None
    if image is not None and (len(image) > 255 or any(c.isspace() for c in image)):
        raise BadRequest(f"'image' is not a valid image name: {image!r}")
    return NewTask(
        script_type=script_type,
        script=script,
        filename=filename,
        name=name,
        upload=parse_bool(form.get("upload"), "upload", default=True),
        requirements=requirements,
        image=image,
        env=parse_env(form.get("env")),
        timeout_seconds=parse_number(
            form.get("timeout_seconds"), "timeout_seconds", float, 1.0, 7 * 24 * 3600.0
        ),
        memory_mb=parse_number(form.get("memory_mb"), "memory_mb", int, 6, 1024 * 1024),
        cpus=parse_number(form.get("cpus"), "cpus", float, 0.01, 256.0),
    )


def parse_page(args: Mapping[str, Any], default_limit: int) -> tuple[int, int]:
    limit = parse_number(args.get("limit"), "limit", int, 1, 1000)
    offset = parse_number(args.get("offset"), "offset", int, 0, 10**12)
    return limit or default_limit, offset or 0
