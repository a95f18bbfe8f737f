"""Pure: `docker inspect` data with the values of secret env variables replaced."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from taskdash.logs.lines import MASK


def redact_env(info: dict[str, Any] | None, secret_names: Iterable[str]) -> dict[str, Any] | None:
    names = set(secret_names)
    if info is None or not names:
        return info
    redacted = copy.deepcopy(info)
    config = redacted.get("Config") or {}
    config["Env"] = [
        f"{name}={MASK}" if name in names else entry
        for entry in config.get("Env") or []
        for name in [entry.partition("=")[0]]
    ]
    return redacted


def env_names(info: dict[str, Any] | None) -> list[str]:
    config = (info or {}).get("Config") or {}
    return [entry.partition("=")[0] for entry in config.get("Env") or []]
