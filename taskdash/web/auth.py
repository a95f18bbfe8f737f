"""Who may do what, checked before every route runs.

Each route declares the role it needs next to it (`@allow(Role.OPERATOR)`, `@public`); a route
that declares nothing is refused, so a new route cannot be left open by mistake. Before it runs:
1. the Host is one this server answers to (DNS rebinding);
2. a write that a browser says comes from another site is refused, unless it carries a bearer
   token (a page elsewhere cannot set that header without CORS, which taskdash never allows);
3. the caller is found: a bearer token, else the session cookie, else anonymous when the
   server may serve without credentials (none exist, and the request reached a loopback
   address from loopback, not through a proxy; or TASKDASH_ALLOW_ANONYMOUS);
4. its role is checked, and a session's writes must carry the session's CSRF token.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from quart import Quart, Response, current_app, g, request
from quart_auth import AuthUser, QuartAuth, login_user, logout_user

from taskdash.core.errors import BadRequest, Forbidden, TaskdashError, Unauthenticated
from taskdash.core.models import Role
from taskdash.core.principal import ANONYMOUS, Principal
from taskdash.operations.accounts import credentials_exist, session_principal, token_principal
from taskdash.web.context import services
from taskdash.web.forms import CSRF_FIELD

View = TypeVar("View", bound=Callable[..., Awaitable[Any]])
PUBLIC = "public"
# Endpoints registered by others than our blueprints.
FOREIGN = {"static": PUBLIC, "openapi": Role.VIEWER}
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Real-IP")
CSRF_HEADER = "X-CSRF-Token"
SESSION_COOKIE = "taskdash_session"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="taskdash"'}


def allow(role: Role) -> Callable[[View], View]:
    """The least role a route needs."""

    def mark(view: View) -> View:
        view.required_role = role  # type: ignore[attr-defined]
        return view

    return mark


def public(view: View) -> View:
    view.required_role = PUBLIC  # type: ignore[attr-defined]
    return view


def required_role(app: Quart, endpoint: str) -> Role | str | None:
    """The declared role of an endpoint; None when it declared nothing."""
    if endpoint in FOREIGN:
        return FOREIGN[endpoint]
    view = app.view_functions.get(endpoint)
    return getattr(view, "required_role", None)


def current_principal() -> Principal | None:
    found: Principal | None = g.get("principal")
    return found


def asking() -> Principal:
    """Who asks, in a route that needs a role (the guard let nobody else through)."""
    found = current_principal()
    if found is None:
        raise Unauthenticated("log in first", headers=CHALLENGE)
    return found


# the steps ---------------------------------------------------------------------------------


def host_name(host: str) -> str:
    return urlsplit(f"//{host}").hostname or ""


def is_loopback(address: str | None) -> bool:
    if not address:
        return False
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def check_host() -> None:
    allowed = services().settings.allowed_host_names
    if allowed and host_name(request.host) not in allowed:
        raise BadRequest(
            f"this server does not answer to the host {host_name(request.host)!r} "
            "(TASKDASH_ALLOWED_HOSTS)",
            code="bad_host",
        )


def cross_site() -> bool:
    """What the browser says about where the request comes from (absent: not a browser)."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    return origin == "null" or (urlsplit(origin).netloc.lower() != request.host.lower())


def bearer_secret() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return secret.strip() or None


async def find_principal() -> Principal | None:
    secret = bearer_secret()
    if secret is not None:
        principal = await token_principal(secret)
        if principal is None:
            raise Unauthenticated(
                "the bearer token is unknown or revoked", code="bad_token", headers=CHALLENGE
            )
        return principal
    session_secret = auth_extension().load_cookie()
    if session_secret:
        principal = await session_principal(session_secret)
        if principal is not None:
            return principal
    if await serves_anonymously():
        return ANONYMOUS
    return None


async def serves_anonymously() -> bool:
    if services().settings.allow_anonymous:
        return True
    if any(name in request.headers for name in PROXY_HEADERS):
        return False
    server = request.scope.get("server") or ("", 0)
    if not (is_loopback(request.remote_addr) and is_loopback(str(server[0]))):
        return False
    if host_name(request.host) not in LOOPBACK_NAMES:
        return False  # a DNS name pointing at loopback: rebinding
    return not await credentials_exist()


def check_role(needed: Role | str, principal: Principal | None) -> None:
    if needed == PUBLIC:
        return
    if principal is None:
        raise Unauthenticated(
            "log in, or send an API token as `Authorization: Bearer <token>`", headers=CHALLENGE
        )
    assert isinstance(needed, Role)
    if not principal.allows(needed):
        raise Forbidden(
            f"this needs the {needed.value} role; {principal.label} is {principal.role.value}"
        )


async def check_csrf(principal: Principal | None) -> None:
    if principal is None or principal.csrf_token is None:
        return
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.mimetype in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        sent = (await request.form).get(CSRF_FIELD)
    if sent != principal.csrf_token:
        raise Forbidden(
            "the CSRF token is missing or wrong: reload the page and try again",
            code="csrf_failed",
        )


async def guard() -> None:
    """Runs before every request (see the module's docstring for the order). A request it
    refuses before its body was read is answered with `Connection: close`: a client that sent
    the next request on the same connection would otherwise meet a connection the server
    drops under it."""
    try:
        await check_request()
    except TaskdashError:
        if request.content_length or request.headers.get("Transfer-Encoding"):
            g.body_unread = True
        raise


async def close_after_unread_body(response: Response) -> Response:
    if g.get("body_unread"):
        response.headers["Connection"] = "close"
    return response


async def check_request() -> None:
    check_host()
    if request.method in UNSAFE and bearer_secret() is None and cross_site():
        raise Forbidden(
            "a request from another site cannot change anything here (send an API token)",
            code="cross_site",
        )
    endpoint = request.endpoint
    if endpoint is None:
        return  # no route matched: the 404/405 answer follows
    needed = required_role(current_app, endpoint)
    if needed is None:
        raise Forbidden(f"{endpoint} declares no permission", code="undeclared")
    principal = await find_principal() if needed != PUBLIC or bearer_secret() else None
    g.principal = principal
    check_role(needed, principal)
    if request.method in UNSAFE:
        await check_csrf(principal)


# the session cookie -------------------------------------------------------------------------


class SessionCookies(QuartAuth):
    """quart-auth's signed session cookie (HttpOnly, SameSite=Lax), Secure whenever the request
    came over https (TASKDASH_COOKIE_SECURE=auto) or always (true)."""

    async def after_request(self, response: Response) -> Response:
        setting = services().settings.cookie_secure
        # No await between this and the cookie being written: no other request interleaves.
        self.cookie_secure = request.is_secure if setting == "auto" else setting == "true"
        return await super().after_request(response)


def auth_extension() -> QuartAuth:
    extension: QuartAuth = current_app.extensions["QUART_AUTH"][0]
    return extension


def register_auth(app: Quart, session_key: bytes, session_seconds: int) -> None:
    app.secret_key = session_key
    SessionCookies(
        app,
        cookie_name=SESSION_COOKIE,
        cookie_samesite="Lax",
        cookie_http_only=True,
        duration=session_seconds,
        salt="taskdash session",
    )
    app.before_request(guard)
    app.after_request(close_after_unread_body)
    app.jinja_env.globals.update(
        csrf_token=template_csrf_token,
        principal=current_principal,
        can_operate=lambda: bool((who := current_principal()) and who.allows(Role.OPERATOR)),
        anonymous_everywhere=lambda: services().settings.allow_anonymous,
    )


def template_csrf_token() -> str:
    principal = current_principal()
    return principal.csrf_token or "" if principal is not None else ""


def log_in(session_secret: str) -> None:
    """The response sets the session cookie (until the browser closes; the server ends the
    session after TASKDASH_SESSION_HOURS in any case)."""
    login_user(AuthUser(session_secret))


def log_out() -> None:
    logout_user()
