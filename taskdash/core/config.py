"""Settings, read once from TASKDASH_* environment variables (and `.env` when present)."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024
# What TASKDASH_DATABASE_URL may start with: the embedded SQLite, or PostgreSQL through asyncpg
# (Tortoise reads all three PostgreSQL spellings the same).
DATABASE_SCHEMES = ("sqlite", "postgres", "postgresql", "asyncpg")


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
    host: str = "127.0.0.1"
    port: int = Field(5000, ge=1, le=65535)
    instance_id: str | None = None
    replica_id: str | None = Field(None, max_length=128)
    replica_lease_seconds: float = Field(15.0, ge=3)
    docker_url: str | None = None
    # A remote engine over TCP with TLS (`dockerd --tlsverify`): all three, or none.
    docker_tls_ca: Path | None = None
    docker_tls_cert: Path | None = None
    docker_tls_key: Path | None = None
    # Where a run's container runs: `docker` (on the engine above) or `swarm` (a service on
    # the swarm that engine manages).
    executor: Literal["docker", "swarm"] = "docker"
    swarm_constraints: str = ""

    allow_anonymous: bool = False
    allowed_hosts: str = ""
    secret_key: str | None = None
    session_hours: float = Field(12.0, gt=0)
    cookie_secure: Literal["auto", "true", "false"] = "auto"
    login_max_failures: int = Field(5, ge=1)
    login_window_seconds: float = Field(900.0, gt=0)
    run_rate_per_minute: int = Field(60, ge=0)
    max_queued_runs: int = Field(1000, ge=1)

    python_image: str = "taskdash/python:bookworm"
    shell_image: str = "taskdash/shell:bookworm"

    max_concurrent_runs: int = Field(default_factory=lambda: os.cpu_count() or 2, ge=1)
    run_timeout_seconds: float = Field(3600.0, gt=0)
    run_memory_mb: int = Field(512, ge=6)
    run_cpus: float = Field(1.0, gt=0)
    run_pids_limit: int = Field(256, ge=8)
    run_tmpfs_mb: int = Field(64, ge=1)
    run_network: str = "none"
    run_user: str = Field("1000:1000", pattern=r"^[0-9]+:[0-9]+$")
    run_runtime: str | None = None
    max_run_timeout_seconds: float = Field(86400.0, gt=0)
    max_run_memory_mb: int = Field(4096, ge=6)
    max_run_cpus: float = Field(default_factory=lambda: float(os.cpu_count() or 2), gt=0)
    allowed_images: str = ""
    stop_grace_seconds: int = Field(5, ge=0)
    log_max_bytes: int = Field(10 * MIB, ge=1024)
    max_script_bytes: int = Field(1 * MIB, ge=1)
    body_timeout_seconds: float = Field(60.0, gt=0)
    body_buffer_mb: int = Field(64, ge=4)

    pip_index_url: str | None = None
    pip_extra_index_url: str | None = None
    pip_find_links: Path | None = None
    pip_ca_bundle: Path | None = None
    pip_no_index: bool = False
    pip_only_binary: bool = False
    build_network: str = "taskdash-build"
    build_timeout_seconds: float = Field(900.0, gt=0)
    build_memory_mb: int = Field(1024, ge=64)
    build_pids_limit: int = Field(512, ge=16)
    build_tmpfs_mb: int = Field(1024, ge=16)
    build_max_mb: int = Field(2048, ge=16)

    retention_days: float = Field(90.0, ge=0)
    keep_runs_per_task: int = Field(500, ge=0)
    deps_unused_days: float = Field(30.0, ge=0)
    retention_every_seconds: float = Field(3600.0, gt=0)

    default_timezone: str = "UTC"
    schedule_missed_deadline_seconds: float = Field(300.0, ge=0)
    page_size: int = Field(50, ge=1, le=1000)
    sse_keepalive_seconds: float = Field(15.0, gt=0)

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = value.partition("://")[0].lower() if "://" in value else ""
        if scheme not in DATABASE_SCHEMES:
            raise ValueError(
                "expected sqlite:///path/to/file.sqlite3 or "
                "postgres://user:password@host:port/database"
            )
        if scheme != "sqlite" and not urlsplit(value).path.strip("/"):
            raise ValueError("a PostgreSQL URL names its database: postgres://…/database")
        return value

    @field_validator("pip_find_links", "pip_ca_bundle")
    @classmethod
    def _must_exist(cls, value: Path | None) -> Path | None:
        if value is not None and not value.exists():
            raise ValueError(f"{value} does not exist")
        return value.resolve() if value is not None else None

    @field_validator("docker_tls_ca", "docker_tls_cert", "docker_tls_key")
    @classmethod
    def _tls_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a file")
        return value.resolve() if value is not None else None

    @field_validator("swarm_constraints")
    @classmethod
    def _constraints_compare(cls, value: str) -> str:
        for constraint in (part.strip() for part in value.split(",") if part.strip()):
            if "==" not in constraint and "!=" not in constraint:
                raise ValueError(
                    f"{constraint!r} is not a placement constraint (like node.labels.pool==runs "
                    "or node.role!=manager)"
                )
        return value

    @model_validator(mode="after")
    def _executor_settings_fit(self) -> Settings:
        tls = [self.docker_tls_ca, self.docker_tls_cert, self.docker_tls_key]
        if any(tls) and not all(tls):
            raise ValueError(
                "TASKDASH_DOCKER_TLS_CA, TASKDASH_DOCKER_TLS_CERT and TASKDASH_DOCKER_TLS_KEY "
                "go together: set all three or none"
            )
        if all(tls) and not (self.docker_url or "").startswith(("tcp://", "https://")):
            raise ValueError(
                "TASKDASH_DOCKER_TLS_* need TASKDASH_DOCKER_URL=tcp://host:port (or https://)"
            )
        if self.executor == "swarm" and self.run_runtime:
            raise ValueError(
                f"TASKDASH_RUN_RUNTIME={self.run_runtime} cannot apply with "
                "TASKDASH_EXECUTOR=swarm (a swarm service cannot pick its OCI runtime: make it "
                "the default-runtime of every node's dockerd instead, and unset "
                "TASKDASH_RUN_RUNTIME)"
            )
        return self

    @property
    def swarm_constraint_list(self) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.swarm_constraints.split(",") if part.strip())

    @model_validator(mode="after")
    def _defaults_within_maxima(self) -> Settings:
        for default, maximum in (
            ("run_timeout_seconds", "max_run_timeout_seconds"),
            ("run_memory_mb", "max_run_memory_mb"),
            ("run_cpus", "max_run_cpus"),
        ):
            if getattr(self, default) > getattr(self, maximum):
                raise ValueError(
                    f"TASKDASH_{default.upper()}={getattr(self, default)} is above "
                    f"TASKDASH_{maximum.upper()}={getattr(self, maximum)}"
                )
        return self

    @property
    def allowed_host_names(self) -> tuple[str, ...]:
        return tuple(name.strip().lower() for name in self.allowed_hosts.split(",") if name.strip())

    @property
    def allowed_image_patterns(self) -> tuple[str, ...]:
        return tuple(name.strip() for name in self.allowed_images.split(",") if name.strip())

    @property
    def database(self) -> str:
        """The database URL: TASKDASH_DATABASE_URL (SQLite or PostgreSQL), else the embedded
        SQLite file, in WAL mode (readers never wait for the writer) and a writer waits up to
        5 s for another's lock instead of failing."""
        if self.database_url:
            return self.database_url
        path = self.data_dir.resolve() / "taskdash.sqlite3"
        return f"sqlite://{path}?journal_mode=WAL&busy_timeout=5000"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def instance(self) -> str:
        """Label value that tells this installation's containers from another's on the engine."""
        if self.instance_id:
            return self.instance_id
        # Replicas share the database, so they share the label too.
        shared = self.database_url or str(self.data_dir.resolve())
        return hashlib.sha256(shared.encode()).hexdigest()[:12]

    @property
    def replica(self) -> str:
        """This process's name among the replicas sharing the database."""
        return self.replica_id or socket.gethostname()

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
            f"TASKDASH_{str(err['loc'][0]).upper()}: {err['msg']}"
            if err["loc"]
            else str(err["msg"]).removeprefix("Value error, ")
            for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None
