"""Logging in and out, and a person's API tokens."""

from __future__ import annotations

from quart import Blueprint, Response, request

from taskdash.core.errors import Forbidden, TaskdashError
from taskdash.core.models import Role, User
from taskdash.operations.accounts import (
    close_session,
    create_token,
    get_user,
    list_tokens,
    list_users,
    log_in,
    parse_role,
    revoke_token,
)
from taskdash.web.auth import allow, asking, log_out, public
from taskdash.web.auth import log_in as set_session_cookie
from taskdash.web.context import services
from taskdash.web.errors import shows_errors
from taskdash.web.forms import read_form
from taskdash.web.responses import page, redirect_to

account = Blueprint("account", __name__)


def local_target(value: str | None) -> str:
    """Where to go after logging in: a path on this site, never another site."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    return value


async def login_again(error: TaskdashError) -> Response:
    """A failed login: the form again, with the name kept and the reason."""
    form, _ = await read_form()
    response = await page(
        "login.html",
        "_login_form.html",
        error.status,
        name=form.get("name", ""),
        next=local_target(form.get("next")),
        error=error.message,
    )
    response.headers.update(error.headers)
    return response


@account.get("/login")
@public
async def login_page() -> Response:
    """The login form."""
    return await page("login.html", "_login_form.html", next=local_target(request.args.get("next")))


@account.post("/login")
@public
@shows_errors(login_again)
async def login() -> Response:
    """Check the name and password, start a session, and go where the person was going."""
    form, _ = await read_form()
    client = request.remote_addr or "unknown"
    session = await log_in(services(), form.get("name", ""), form.get("password", ""), client)
    set_session_cookie(session.secret)
    return redirect_to(local_target(form.get("next")))


@account.post("/logout")
@allow(Role.VIEWER)
async def logout() -> Response:
    """End the session."""
    who = asking()
    if who.session_id is not None:
        await close_session(who.session_id)
    log_out()
    return redirect_to("/login")


async def account_page(status: int = 200, **extra: object) -> Response:
    who = asking()
    user: User | None = await get_user(who.name) if who.user_id is not None else None
    is_admin = who.allows(Role.ADMIN)
    tokens = await list_tokens(None if is_admin else user) if is_admin or user else []
    context = {
        "who": who,
        "user": user,
        "tokens": tokens,
        "users": await list_users() if is_admin else [],
        "roles": [role for role in Role if who.allows(role)],
        **extra,
    }
    return await page("account.html", "_account.html", status, **context)


async def account_again(error: TaskdashError) -> Response:
    return await account_page(error.status, token_error=error.message)


@account.get("/account")
@allow(Role.VIEWER)
async def account_view() -> Response:
    """Who you are, and your API tokens (an admin sees every user and token)."""
    return await account_page()


@account.post("/account/tokens")
@allow(Role.VIEWER)
@shows_errors(account_again)
async def new_token() -> Response:
    """Create an API token; its secret is shown once, on the page this answers."""
    who = asking()
    if who.user_id is None:
        raise Forbidden("log in as a user to create tokens (or use `python -m taskdash token`)")
    form, _ = await read_form()
    role = parse_role(form.get("role") or Role.VIEWER.value)
    created = await create_token(form.get("name", "").strip(), role, await get_user(who.name))
    return await account_page(201, created=created)


@account.post("/account/tokens/<name>/revoke")
@allow(Role.VIEWER)
@shows_errors(account_again)
async def revoke(name: str) -> Response:
    """Revoke one of your tokens (an admin: any token)."""
    await revoke_token(name, by=asking())
    return await account_page(flash=f"Revoked the token “{name}”.")
