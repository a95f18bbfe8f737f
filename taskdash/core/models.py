"""Tortoise models: a Task is what to run, a Run is one execution of it, a Schedule fires runs."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.models import Model

from taskdash.core.clock import utcnow


class ScriptType(StrEnum):
    PYTHON = "python"
    SHELL = "shell"


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"
    TIMED_OUT = "timed_out"
    ERROR = "error"

    @property
    def is_terminal(self) -> bool:
        return self not in (RunStatus.QUEUED, RunStatus.RUNNING)


ACTIVE_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)


class Trigger(StrEnum):
    API = "api"
    DASHBOARD = "dashboard"
    SCHEDULE = "schedule"


class Role(StrEnum):
    """What a user or token may do; each role may do what the ones before it may."""

    VIEWER = "viewer"  # read tasks, runs, logs; follow streams
    OPERATOR = "operator"  # also create, run, stop, schedule, delete
    ADMIN = "admin"  # also users and every token

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role | str) -> bool:
        return self.rank >= Role(needed).rank


class ActorKind(StrEnum):
    """Who started a run."""

    USER = "user"
    TOKEN = "token"
    SCHEDULE = "schedule"
    ANONYMOUS = "anonymous"


class OverlapPolicy(StrEnum):
    SKIP = "skip"
    QUEUE = "queue"
    ALLOW = "allow"


class Task(Model):
    id = fields.UUIDField(primary_key=True)
    name = fields.CharField(max_length=200)
    script_type = fields.CharEnumField(ScriptType, max_length=16)
    # None when the task was created with upload=false: the script was streamed, not kept.
    script = fields.BinaryField(null=True)
    script_filename = fields.CharField(max_length=255, default="")
    requirements = fields.TextField(null=True)
    image = fields.CharField(max_length=255, null=True)
    env: fields.Field[dict[str, str]] = fields.JSONField(default=dict)
    timeout_seconds = fields.FloatField(null=True)
    memory_mb = fields.IntField(null=True)
    cpus = fields.FloatField(null=True)
    # Env values that are never shown again: a JSON object encrypted with the installation's key.
    secret_env = fields.BinaryField(null=True)
    # The newest run, kept here so listing tasks with their status is one indexed lookup.
    last_run_id = fields.UUIDField(null=True)
    created_at = fields.DatetimeField(default=utcnow, db_index=True)
    updated_at = fields.DatetimeField(default=utcnow)

    runs: fields.ReverseRelation[Run]

    class Meta:
        table = "task"
        ordering = ["-created_at"]

    @property
    def script_kept(self) -> bool:
        return self.script is not None


class Run(Model):
    id = fields.UUIDField(primary_key=True)
    task: fields.ForeignKeyRelation[Task] = fields.ForeignKeyField(
        "taskdash.Task", related_name="runs", on_delete=fields.CASCADE
    )
    status = fields.CharEnumField(RunStatus, max_length=16, default=RunStatus.QUEUED)
    trigger = fields.CharEnumField(Trigger, max_length=16, default=Trigger.API)
    container_id = fields.CharField(max_length=64, null=True)
    image = fields.CharField(max_length=255, default="")
    exit_code = fields.IntField(null=True)
    queued_at = fields.DatetimeField(default=utcnow)
    # When the requirements build began and ended (null without requirements); the run's
    # own clock (started_at, the timeout) starts with its container.
    build_started_at = fields.DatetimeField(null=True)
    build_finished_at = fields.DatetimeField(null=True)
    started_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)
    error = fields.TextField(null=True)
    log_bytes = fields.BigIntField(default=0)
    log_lines = fields.IntField(default=0)
    log_truncated = fields.BooleanField(default=False)
    docker_info: fields.Field[dict[str, Any] | None] = fields.JSONField(null=True)
    # Set for runs fired by a schedule: the slot they were fired for.
    scheduled_for = fields.DatetimeField(null=True)
    catch_up = fields.BooleanField(default=False)
    # Database defaults too: the columns were added to tables that already held runs.
    started_by_kind = fields.CharEnumField(
        ActorKind, max_length=16, default=ActorKind.ANONYMOUS, db_default=ActorKind.ANONYMOUS.value
    )
    started_by_name = fields.CharField(max_length=64, default="", db_default="")
    # The replica that supervises it (null until one claims it); another replica asks it to
    # stop through stop_requested, since the container may be on that replica's engine.
    owner = fields.CharField(max_length=128, null=True)
    stop_requested = fields.BooleanField(default=False, db_default=False)

    task_id: object

    class Meta:
        table = "run"
        ordering = ["-queued_at"]
        indexes = (("task_id", "queued_at"), ("status",), ("queued_at",), ("owner", "status"))

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class Schedule(Model):
    id = fields.IntField(primary_key=True)
    task: fields.OneToOneRelation[Task] = fields.OneToOneField(
        "taskdash.Task", related_name="schedule", on_delete=fields.CASCADE
    )
    cron_expression = fields.CharField(max_length=200)
    timezone = fields.CharField(max_length=64, default="UTC")
    enabled = fields.BooleanField(default=True)
    overlap = fields.CharEnumField(OverlapPolicy, max_length=8, default=OverlapPolicy.SKIP)
    # The next slot to decide, in UTC; null while paused. The loop sleeps until the smallest.
    next_run_at = fields.DatetimeField(null=True, db_index=True)
    last_run_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(default=utcnow)
    updated_at = fields.DatetimeField(default=utcnow)

    task_id: object

    class Meta:
        table = "schedule"


class SlotOutcome(StrEnum):
    FIRED = "fired"
    SKIPPED = "skipped"
    WAITING = "waiting"
    MISSED = "missed"


class ScheduleSlot(Model):
    """One decided cron slot of a task: fired (with its run), skipped, waiting or missed."""

    # Unique (task, slot_at), written in the same transaction as the run it starts: a slot
    # fires once, even if two schedulers (or a retry after a crash) decide it.

    id = fields.BigIntField(primary_key=True)
    task: fields.ForeignKeyRelation[Task] = fields.ForeignKeyField(
        "taskdash.Task", related_name="schedule_slots", on_delete=fields.CASCADE
    )
    slot_at = fields.DatetimeField()
    outcome = fields.CharEnumField(SlotOutcome, max_length=8)
    run_id = fields.UUIDField(null=True)
    catch_up = fields.BooleanField(default=False)
    # Earlier slots of the same schedule passed over without a run (the server was down).
    missed_before = fields.IntField(default=0)
    reason = fields.CharField(max_length=200, default="")
    recorded_at = fields.DatetimeField(default=utcnow)

    task_id: object

    class Meta:
        table = "schedule_slot"
        unique_together = (("task", "slot_at"),)
        indexes = (("outcome", "slot_at"),)


class User(Model):
    """A person who logs in to the dashboard."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=64, unique=True)
    # argon2id, with its parameters and salt in the string.
    password_hash = fields.CharField(max_length=255)
    role = fields.CharEnumField(Role, max_length=16, default=Role.VIEWER)
    created_at = fields.DatetimeField(default=utcnow)
    updated_at = fields.DatetimeField(default=utcnow)

    class Meta:
        table = "account"  # `user` is a reserved word in PostgreSQL


class ApiToken(Model):
    """A bearer token for the API: only the SHA-256 of its secret is stored."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=64, unique=True)
    # The user it acts for (its role never exceeds theirs); null for a service token.
    user: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "taskdash.User", related_name="tokens", null=True, on_delete=fields.CASCADE
    )
    role = fields.CharEnumField(Role, max_length=16, default=Role.VIEWER)
    secret_hash = fields.CharField(max_length=64, unique=True)
    # The first characters of the secret, so a person can tell their tokens apart.
    hint = fields.CharField(max_length=16)
    created_at = fields.DatetimeField(default=utcnow)
    last_used_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    user_id: int | None

    class Meta:
        table = "api_token"


class UserSession(Model):
    """A dashboard login: the cookie carries its secret, whose SHA-256 is stored here."""

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "taskdash.User", related_name="sessions", on_delete=fields.CASCADE
    )
    secret_hash = fields.CharField(max_length=64, unique=True)
    csrf_token = fields.CharField(max_length=64)
    created_at = fields.DatetimeField(default=utcnow)
    expires_at = fields.DatetimeField(db_index=True)

    user_id: int

    class Meta:
        table = "user_session"


class Replica(Model):
    """A taskdash process sharing the database, with a lease it renews while it lives.

    Once the lease has expired, another replica takes over the runs it owned."""

    id = fields.CharField(max_length=128, primary_key=True)
    started_at = fields.DatetimeField(default=utcnow)
    heartbeat_at = fields.DatetimeField(default=utcnow)
    lease_expires_at = fields.DatetimeField(default=utcnow, db_index=True)

    class Meta:
        table = "replica"
