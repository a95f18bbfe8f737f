"""Settings, read once from TASKDASH_* environment variables (and `.env` when present)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class ConfigError(Exception):
    """A TASKDASH_* variable has a value we cannot use; the message names it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TASKDASH_",
        env_file=".env",
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
    )

    data_dir: Path = Path("data")
    database_url: str | None = None
    host: str = "0.0.0.0"
    port: int = Field(5000, ge=1, le=65535)
    instance_id: str | None = None
    docker_url: str | None = None

    python_image: str = "taskdash/python:bookworm"
    shell_image: str = "taskdash/shell:bookworm"

    max_concurrent_runs: int = Field(default_factory=lambda: os.cpu_count() or 2, ge=1)
    run_timeout_seconds: float = Field(3600.0, gt=0)
    run_memory_mb: int = Field(512, ge=6)
    run_cpus: float = Field(1.0, gt=0)
    run_pids_limit: int = Field(256, ge=8)
    run_tmpfs_mb: int = Field(64, ge=1)
    run_network: str = "none"
    run_user: str = "1000:1000"
    stop_grace_seconds: int = Field(5, ge=0)
    log_max_bytes: int = Field(10 * MIB, ge=1024)
    max_script_bytes: int = Field(1 * MIB, ge=1)

    pip_index_url: str | None = None
    pip_extra_index_url: str | None = None
    pip_find_links: Path | None = None
    pip_ca_bundle: Path | None = None
    pip_no_index: bool = False
    build_network: str = "bridge"
    build_timeout_seconds: float = Field(900.0, gt=0)

    default_timezone: str = "UTC"
    schedule_missed_deadline_seconds: float = Field(300.0, ge=0)
    page_size: int = Field(50, ge=1, le=1000)
    sse_keepalive_seconds: float = Field(15.0, gt=0)

    @field_validator("pip_find_links", "pip_ca_bundle")
    @classmethod
    def _must_exist(cls, value: Path | None) -> Path | None:
        if value is not None and not value.exists():
            raise ValueError(f"{value} does not exist")
        return value.resolve() if value is not None else None

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite://{self.data_dir.resolve() / 'taskdash.sqlite3'}"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def instance(self) -> str:
        """Label value that tells this installation's containers from another's on the engine."""
        if self.instance_id:
            return self.instance_id
        return hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:12]

    def image_for(self, script_type: str, custom: str | None = None) -> str:
        """The image a run uses: the task's own, else the default for its script type."""
        if custom:
            return custom
        return self.python_image if script_type == "python" else self.shell_image


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, turning pydantic's error into one that names the variables."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"TASKDASH_{str(err['loc'][0]).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None
