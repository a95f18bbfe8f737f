"""Users, API tokens and dashboard sessions: who may ask, and how they prove it."""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from taskdash.core import clock
from taskdash.core.crypto import (
    dummy_hash,
    hash_password,
    new_secret,
    secret_hash,
    verify_password,
)
from taskdash.core.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    TooManyRequests,
    Unauthenticated,
)
from taskdash.core.models import ActorKind, ApiToken, Role, User, UserSession
from taskdash.core.principal import Principal
from taskdash.services import Services

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD_CHARS = 10
TOKEN_PREFIX = "tdt"
SESSION_PREFIX = "tds"
# A token's last use is written at most this often (not on every request).
LAST_USED_EVERY = timedelta(minutes=1)


def check_name(name: str, what: str) -> str:
    if not NAME.match(name):
        raise BadRequest(
            f"{what} name {name!r} is not valid: use 1 to 64 letters, digits, or . _ @ - "
            "(starting with a letter or digit)"
        )
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise BadRequest(f"the password must have at least {MIN_PASSWORD_CHARS} characters")
    return password


def parse_role(value: str) -> Role:
    try:
        return Role(value.strip().lower())
    except ValueError:
        choices = ", ".join(role.value for role in Role)
        raise BadRequest(f"role must be one of {choices}, not {value!r}") from None


async def credentials_exist() -> bool:
    """Whether any user or live token exists (else the server may serve anonymously)."""
    if await User.exists():
        return True
    return bool(await ApiToken.filter(revoked_at__isnull=True).exists())


# users ------------------------------------------------------------------------------------


async def add_user(name: str, password: str, role: Role) -> User:
    check_name(name, "user")
    hashed = await asyncio.to_thread(hash_password, check_password(password))
    try:
        return await User.create(name=name, password_hash=hashed, role=role)
    except IntegrityError:
        raise Conflict(f"a user named {name!r} exists already", code="user_exists") from None


async def get_user(name: str) -> User:
    user = await User.get_or_none(name=name)
    if user is None:
        raise NotFound(f"no user named {name!r}", code="user_not_found")
    return user


async def list_users() -> list[User]:
    return list(await User.all().order_by("name"))


async def remove_user(name: str) -> None:
    """The user, their sessions and their tokens."""
    user = await get_user(name)
    await user.delete()


async def set_password(name: str, password: str) -> None:
    """A new password; every session of the user ends."""
    user = await get_user(name)
    user.password_hash = await asyncio.to_thread(hash_password, check_password(password))
    user.updated_at = clock.utcnow()
    async with in_transaction():
        await user.save(update_fields=["password_hash", "updated_at"])
        await UserSession.filter(user_id=user.id).delete()


async def authenticate(name: str, password: str) -> User | None:
    """The user when the password is theirs. Unknown names cost the same time."""
    user = await User.get_or_none(name=name)
    stored = user.password_hash if user is not None else dummy_hash()
    matches = await asyncio.to_thread(verify_password, stored, password)
    return user if matches and user is not None else None


# tokens -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewToken:
    token: ApiToken
    secret: str  # shown once, never stored


async def create_token(name: str, role: Role, owner: User | None = None) -> NewToken:
    """A token for `owner` (never above their role), or a service token without one."""
    check_name(name, "token")
    if owner is not None and not owner.role.allows(role):
        raise Forbidden(
            f"a token cannot have more rights than its user: {owner.name} is {owner.role.value}"
        )
    secret = new_secret(TOKEN_PREFIX)
    try:
        token = await ApiToken.create(
            name=name,
            user=owner,
            role=role,
            secret_hash=secret_hash(secret),
            hint=secret[: len(TOKEN_PREFIX) + 5],
        )
    except IntegrityError:
        raise Conflict(f"a token named {name!r} exists already", code="token_exists") from None
    return NewToken(token, secret)


async def list_tokens(owner: User | None = None) -> list[ApiToken]:
    """Every token (with its user), or the ones of `owner`."""
    query = ApiToken.all().prefetch_related("user").order_by("name")
    if owner is not None:
        query = query.filter(user_id=owner.id)
    return list(await query)


async def revoke_token(name: str, by: Principal | None = None) -> ApiToken:
    """Revoke a token; a non-admin may revoke only their own."""
    token = await ApiToken.get_or_none(name=name)
    if token is None or (by is not None and not may_manage(by, token)):
        raise NotFound(f"no token named {name!r}", code="token_not_found")
    if token.revoked_at is None:
        token.revoked_at = clock.utcnow()
        await token.save(update_fields=["revoked_at"])
    return token


def may_manage(principal: Principal, token: ApiToken) -> bool:
    return principal.allows(Role.ADMIN) or (
        principal.user_id is not None and token.user_id == principal.user_id
    )


async def token_principal(secret: str) -> Principal | None:
    """Who a bearer secret stands for; None when unknown or revoked."""
    token = await ApiToken.get_or_none(secret_hash=secret_hash(secret), revoked_at__isnull=True)
    if token is None:
        return None
    role = token.role
    if token.user_id is not None:
        owner = await User.get_or_none(id=token.user_id)
        if owner is None:
            return None
        role = min(role, owner.role, key=lambda r: r.rank)  # a demoted owner demotes it
    now = clock.utcnow()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_EVERY:
        await ApiToken.filter(id=token.id).update(last_used_at=now)
    return Principal(ActorKind.TOKEN, token.name, role, user_id=token.user_id, token_id=token.id)


# sessions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewSession:
    secret: str  # the cookie's value; only its hash is stored
    expires_at: datetime


async def open_session(user: User, lifetime: timedelta) -> NewSession:
    secret = new_secret(SESSION_PREFIX)
    now = clock.utcnow()
    await UserSession.filter(Q(user_id=user.id) & Q(expires_at__lte=now)).delete()
    session = await UserSession.create(
        user=user,
        secret_hash=secret_hash(secret),
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + lifetime,
    )
    return NewSession(secret, session.expires_at)


async def session_principal(secret: str) -> Principal | None:
    """Who a session cookie stands for; None when unknown or expired."""
    session = (
        await UserSession.filter(secret_hash=secret_hash(secret), expires_at__gt=clock.utcnow())
        .prefetch_related("user")
        .first()
    )
    if session is None:
        return None
    user: User = session.user
    return Principal(
        ActorKind.USER,
        user.name,
        user.role,
        user_id=user.id,
        session_id=session.id,
        csrf_token=session.csrf_token,
    )


async def close_session(session_id: int) -> None:
    await UserSession.filter(id=session_id).delete()


# logging in -------------------------------------------------------------------------------


async def log_in(services: Services, name: str, password: str, client: str) -> NewSession:
    """A new session for the right password; repeated failures for the same name or from the
    same client are refused with 429 until the window has passed."""
    failures = services.login_failures
    keys = (f"name:{name.lower()}", f"client:{client}")
    waits = [wait for key in keys if (wait := failures.retry_after(key)) is not None]
    if waits:
        raise TooManyRequests(
            "too many failed logins: wait before trying again", retry_after=max(waits)
        )
    user = await authenticate(name, password)
    if user is None:
        for key in keys:
            failures.record(key)
        raise Unauthenticated("wrong user name or password", code="login_failed")
    failures.reset(keys[0])
    return await open_session(user, timedelta(hours=services.settings.session_hours))
