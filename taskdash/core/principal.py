"""Who is asking: a user, a token, the scheduler, or nobody in particular (anonymous mode)."""

from __future__ import annotations

from dataclasses import dataclass

from taskdash.core.models import ActorKind, Role


@dataclass(frozen=True)
class Principal:
    kind: ActorKind
    name: str
    role: Role
    user_id: int | None = None
    token_id: int | None = None
    session_id: int | None = None
    # A dashboard session's token that its writes must carry.
    csrf_token: str | None = None

    @property
    def key(self) -> str:
        """Stable identity for rate limits."""
        return f"{self.kind.value}:{self.name}"

    @property
    def label(self) -> str:
        if self.kind is ActorKind.TOKEN:
            return f"token {self.name}"
        return self.name

    def allows(self, needed: Role | str) -> bool:
        return self.role.allows(needed)


ANONYMOUS = Principal(ActorKind.ANONYMOUS, "anonymous", Role.ADMIN)
SCHEDULER = Principal(ActorKind.SCHEDULE, "schedule", Role.OPERATOR)
