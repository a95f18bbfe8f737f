"""Who may do what, attacked over real HTTP against a real server with users and tokens."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from taskdash import create_app
from taskdash.core.config import load_settings
from tests.databases import query
from tests.support import (
    LiveServer,
    add_token,
    add_user,
    bearer,
    create_task,
    taskdash_cli,
    wait_run,
)

PASSWORD = "correct horse battery"
EVIL = "http://evil.example"


@dataclass
class Secured:
    server: LiveServer
    data_dir: Path
    tokens: dict[str, str]
    task_id: str
    run_id: str

    def client(self, role: str | None = None) -> httpx.Client:
        headers = bearer(self.tokens[role]) if role else {}
        return httpx.Client(base_url=self.server.base_url, timeout=30, headers=headers)


@pytest.fixture(scope="module")
def secured(docker_engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """A server with a user and a token per role (and a revoked token), and one finished task."""
    data_dir = tmp_path_factory.mktemp("secured") / "data"
    tokens = {}
    for role in ("viewer", "operator", "admin"):
        add_user(data_dir, role, PASSWORD, role)
        tokens[role] = add_token(data_dir, f"{role}-token", role)
    tokens["revoked"] = add_token(data_dir, "revoked-token", "admin")
    assert taskdash_cli(data_dir, "token", "revoke", "revoked-token").returncode == 0
    server = LiveServer(data_dir, env={"TASKDASH_RUN_RATE_PER_MINUTE": "0"}).start()
    with httpx.Client(base_url=server.base_url, headers=bearer(tokens["operator"])) as http:
        created = create_task(http, "echo secured\n", kind="sh")
        wait_run(http, created["task_id"], created["run_id"])
    yield Secured(server, data_dir, tokens, created["task_id"], created["run_id"])
    server.stop()


def log_in(secured: Secured, name: str) -> httpx.Client:
    client = secured.client()
    response = client.post("/login", data={"name": name, "password": PASSWORD, "next": "/"})
    assert response.status_code == 303, response.text
    return client


def csrf_of(client: httpx.Client) -> str:
    page = client.get("/").text
    found = re.search(r'"X-CSRF-Token": "([^"]+)"', page)
    assert found, "the page carries no CSRF token"
    return found.group(1)


# every route ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    endpoint: str
    role: str  # "public", "viewer", "operator"


def routes(task_id: str, run_id: str, name: str = "viewer-token") -> list[Route]:
    """Every route of the app (the OpenAPI document's and the pages'), with real ids."""
    app = create_app(load_settings(data_dir="/tmp/taskdash-routes"))
    found = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        declared = getattr(view, "required_role", None)
        role = {"static": "public", "openapi": "viewer"}.get(rule.endpoint) or str(
            getattr(declared, "value", declared)
        )
        path = (
            rule.rule.replace("<task_id>", task_id)
            .replace("<run_id>", run_id)
            .replace("<name>", name)
            .replace("<path:filename>", "app.css")
        )
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append(Route(method, path, rule.endpoint, role))
    return found


def test_every_route_declares_who_may_use_it(secured: Secured) -> None:
    listed = routes(secured.task_id, secured.run_id)
    assert len(listed) > 40
    assert {route.role for route in listed} <= {"public", "viewer", "operator", "admin"}
    with secured.client("viewer") as viewer:
        spec = viewer.get("/openapi.json").json()
    documented = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    endpoints = {(route.method, route.path) for route in routes("{task_id}", "{run_id}", "{name}")}
    assert documented <= endpoints, "the OpenAPI document lists a route the app lacks"


def test_without_credentials_nothing_but_the_public_routes_answers(secured: Secured) -> None:
    with secured.client() as anonymous:
        for route in routes(secured.task_id, secured.run_id):
            response = anonymous.request(route.method, route.path, timeout=10)
            if route.role == "public":
                assert response.status_code < 500, route
                if response.status_code == 401:  # the login form, refusing empty fields
                    assert route.endpoint == "account.login"
                    assert "wrong user name or password" in response.text
                continue
            if route.endpoint.startswith(("pages.", "account.")):
                assert response.status_code == 303, route
                assert response.headers["location"].startswith("/login?next="), route
            else:
                assert response.status_code == 401, route
                assert response.json()["error"]["code"] == "unauthenticated", route
                assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_viewer_reads_but_changes_nothing(secured: Secured) -> None:
    with secured.client("viewer") as viewer:
        for route in routes(secured.task_id, secured.run_id):
            if route.role != "operator":
                continue
            response = viewer.request(route.method, route.path, timeout=10)
            assert response.status_code == 403, route
        assert viewer.get(f"/task/{secured.task_id}").status_code == 200
        assert viewer.get(f"/task/{secured.task_id}/logs").text == "secured\n"
        assert viewer.get(f"/tasks/{secured.task_id}").status_code == 200
        assert viewer.get("/openapi.json").status_code == 200
        assert viewer.get("/whoami").json() == {
            "kind": "token",
            "name": "viewer-token",
            "role": "viewer",
        }
    with secured.client("operator") as operator:
        assert operator.get(f"/task/{secured.task_id}").json()["status"] == "succeeded"


def test_a_revoked_or_unknown_token_is_refused(secured: Secured) -> None:
    for headers in (
        bearer(secured.tokens["revoked"]),
        bearer("tdt_" + "x" * 43),
        {"Authorization": "Basic dmlld2VyOmNvcnJlY3QgaG9yc2UgYmF0dGVyeQ=="},
    ):
        with httpx.Client(base_url=secured.server.base_url, headers=headers) as client:
            response = client.get("/task/")
            assert response.status_code == 401
            assert response.json()["error"]["code"] in ("bad_token", "unauthenticated")


def test_runs_record_who_started_them(secured: Secured) -> None:
    with secured.client("operator") as operator:
        started = operator.put(f"/task/{secured.task_id}").json()
        run = wait_run(operator, secured.task_id, started["run_id"])
    assert run["started_by"] == {"kind": "token", "name": "operator-token"}
    user = log_in(secured, "operator")
    response = user.post(
        f"/tasks/{secured.task_id}/run",
        headers={"X-CSRF-Token": csrf_of(user), "HX-Request": "true"},
    )
    assert response.status_code == 200, response.text
    with secured.client("admin") as admin:
        latest = admin.get(f"/task/{secured.task_id}").json()["last_run"]
        assert (latest["started_by"], latest["trigger"]) == (
            {"kind": "user", "name": "operator"},
            "dashboard",
        )
        wait_run(admin, secured.task_id, latest["run_id"])
    page = user.get(f"/tasks/{secured.task_id}/runs/{latest['run_id']}").text
    assert 'id="run-started-by">operator<' in page


# sessions ---------------------------------------------------------------------------------------


def test_a_session_logs_in_and_out(secured: Secured) -> None:
    client = secured.client()
    login = client.post("/login", data={"name": "viewer", "password": PASSWORD, "next": "/tasks/x"})
    assert login.status_code == 303 and login.headers["location"] == "/tasks/x"
    cookie = login.headers["set-cookie"]
    assert cookie.startswith("taskdash_session=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert client.get("/").status_code == 200
    assert "viewer" in client.get("/").text
    kept = dict(client.cookies)
    out = client.post("/logout", headers={"X-CSRF-Token": csrf_of(client)})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert client.get("/").status_code == 303
    with httpx.Client(base_url=secured.server.base_url, cookies=kept) as stolen:
        assert stolen.get("/task/").status_code == 401, "a logged-out session stays dead"


def test_login_comes_back_to_the_page_asked_for_with_its_query(secured: Secured) -> None:
    with secured.client() as client:
        asked = client.get("/", params={"page": "2", "x": "a&b"})
        assert asked.headers["location"] == "/login?next=/%3Fpage%3D2%26x%3Da%2526b"
        form = client.get(asked.headers["location"]).text
        target = re.search(r'name="next" value="([^"]+)"', form)
        assert target and target.group(1) == "/?page=2&amp;x=a%26b"
        back = client.post(
            "/login", data={"name": "viewer", "password": PASSWORD, "next": "/?page=2&x=a%26b"}
        )
        assert back.headers["location"] == "/?page=2&x=a%26b"


def test_login_goes_only_to_paths_on_this_site(secured: Secured) -> None:
    with secured.client() as client:
        for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
            response = client.post(
                "/login", data={"name": "viewer", "password": PASSWORD, "next": target}
            )
            assert response.headers["location"] == "/"


def test_an_expired_session_goes_back_to_the_login_page(secured: Secured) -> None:
    client = log_in(secured, "viewer")
    query(
        secured.data_dir, "UPDATE user_session SET expires_at = ?", datetime(2000, 1, 1, tzinfo=UTC)
    )
    response = client.get(f"/tasks/{secured.task_id}")
    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next=/tasks/{secured.task_id}"
    assert client.get("/task/").status_code == 401


def test_a_wrong_password_says_so_without_telling_which_part(secured: Secured) -> None:
    with secured.client() as client:
        for name in ("viewer", "nobody"):
            response = client.post("/login", data={"name": name, "password": "wrong password!"})
            assert response.status_code == 401
            assert "wrong user name or password" in response.text
            assert "set-cookie" not in response.headers


def test_repeated_failures_are_throttled_by_name_and_by_client(
    make_server: Any, tmp_path: Path
) -> None:
    data_dir = tmp_path / "throttle"
    add_user(data_dir, "alice", PASSWORD, "viewer")
    server = make_server(data_dir=data_dir, login_max_failures="3")
    with server.client() as client:
        for _ in range(3):
            assert (
                client.post("/login", data={"name": "alice", "password": "nope nope!"}).status_code
                == 401
            )
        refused = client.post("/login", data={"name": "alice", "password": PASSWORD})
        assert refused.status_code == 429, "even the right password waits"
        assert int(refused.headers["retry-after"]) > 0
        assert "too many failed logins" in refused.text
        other = client.post("/login", data={"name": "bob", "password": "nope nope!"})
        assert other.status_code == 429, "the client is throttled too"


# cross-site and CSRF ----------------------------------------------------------------------------


def test_a_cookie_session_write_needs_the_csrf_token(secured: Secured) -> None:
    client = log_in(secured, "operator")
    path = f"/tasks/{secured.task_id}/run"
    missing = client.post(path)
    assert missing.status_code == 403 and "CSRF" in missing.text
    wrong = client.post(path, data={"csrf_token": "guess"})
    assert wrong.status_code == 403
    as_json = client.put(f"/task/{secured.task_id}")
    assert as_json.status_code == 403 and as_json.json()["error"]["code"] == "csrf_failed"
    token = csrf_of(client)
    assert client.post(path, data={"csrf_token": token}).status_code == 303
    assert (
        client.put(f"/task/{secured.task_id}", headers={"X-CSRF-Token": token}).status_code == 202
    )


def test_a_write_from_another_site_is_refused_even_with_the_token(secured: Secured) -> None:
    client = log_in(secured, "operator")
    token = csrf_of(client)
    for headers in (
        {"Origin": EVIL},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "null"},
    ):
        response = client.put(
            f"/task/{secured.task_id}", headers={"X-CSRF-Token": token, **headers}
        )
        assert response.status_code == 403, headers
        assert response.json()["error"]["code"] == "cross_site"
    with secured.client("operator") as api:
        allowed = api.put(f"/task/{secured.task_id}", headers={"Origin": EVIL})
        assert allowed.status_code == 202, "a bearer token is no browser's ambient credential"


def test_a_cross_site_form_cannot_run_code_on_an_anonymous_server(client: httpx.Client) -> None:
    """The issue's reproduction: a urlencoded POST to /task/sh with a foreign Origin."""
    before = int(client.get("/task/", params={"limit": 1}).headers["X-Total-Count"])
    for headers in ({"Origin": EVIL}, {"Sec-Fetch-Site": "cross-site"}):
        response = client.post("/task/sh", data={"script": "touch /tmp/pwned"}, headers=headers)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "cross_site"
        page = client.post("/tasks", data={"script_type": "shell", "script": "id"}, headers=headers)
        assert page.status_code == 403
    assert int(client.get("/task/", params={"limit": 1}).headers["X-Total-Count"]) == before


def test_a_refused_request_whose_body_was_not_read_closes_its_connection(
    client: httpx.Client,
) -> None:
    """So the client opens a new one for its next request instead of meeting a connection the
    server drops under it (seen once as "Server disconnected" on a keep-alive connection)."""
    refused = client.post("/task/sh", data={"script": "id"}, headers={"Origin": EVIL})
    assert refused.status_code == 403
    assert refused.headers["Connection"] == "close"
    assert client.get("/healthz").headers.get("Connection") != "close"
    for _ in range(20):
        response = client.post("/tasks", data={"script": "id"}, headers={"Origin": EVIL})
        assert response.status_code == 403


def test_an_anonymous_server_answers_only_to_loopback_names(client: httpx.Client) -> None:
    assert client.get("/task/", headers={"Host": "localhost"}).status_code == 200
    rebound = client.get("/task/", headers={"Host": "evil.example:5000"})
    assert rebound.status_code == 401, "a DNS name pointing at 127.0.0.1 gets no anonymous access"
    proxied = client.get("/task/", headers={"X-Forwarded-For": "203.0.113.9"})
    assert proxied.status_code == 401, "requests relayed by a proxy come from elsewhere"


def test_allowed_hosts_refuse_any_other_host(make_server: Any) -> None:
    server = make_server(allowed_hosts="taskdash.test,127.0.0.1")
    with server.client() as client:
        assert client.get("/healthz").status_code == 200
        other = client.get("/task/", headers={"Host": "other.test"})
        assert other.status_code == 400 and other.json()["error"]["code"] == "bad_host"
        assert client.get("/healthz", headers={"Host": "taskdash.test"}).status_code == 200


# browser hardening ------------------------------------------------------------------------------


def test_every_kind_of_response_carries_the_security_headers(secured: Secured) -> None:
    with secured.client("viewer") as viewer:
        answers = [
            viewer.get("/"),
            viewer.get(f"/task/{secured.task_id}"),
            viewer.get("/static/app.css"),
            viewer.get("/no/such/thing"),
            viewer.get("/healthz"),
            secured.client().get("/task/"),
        ]
        with viewer.stream("GET", f"/task/{secured.task_id}/logs/stream") as stream:
            answers.append(stream)
    for response in answers:
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
        assert response.headers["x-frame-options"] == "DENY"


def test_no_page_has_an_inline_script_or_style(secured: Secured) -> None:
    client = log_in(secured, "admin")
    for path in (
        "/",
        f"/tasks/{secured.task_id}",
        f"/tasks/{secured.task_id}/runs/{secured.run_id}",
        "/account",
        "/tasks/new",
    ):
        page = client.get(path).text
        assert not re.search(r"<script(?![^>]*\bsrc=)", page), path
        assert "<style" not in page and " style=" not in page, path
        assert not re.search(r"\son[a-z]+=", page), f"{path} has an inline event handler"


def test_health_tells_no_internals(secured: Secured) -> None:
    body = secured.client().get("/healthz").json()
    assert set(body) == {"status", "database", "docker", "loop_lag"}
    assert body["status"] == "ok"


# tokens from the dashboard ----------------------------------------------------------------------


def test_a_user_makes_a_token_sees_it_once_and_revokes_it(secured: Secured) -> None:
    client = log_in(secured, "operator")
    name = f"laptop-{uuid.uuid4().hex[:6]}"
    token = csrf_of(client)
    too_strong = client.post(
        "/account/tokens", data={"name": name, "role": "admin", "csrf_token": token}
    )
    assert too_strong.status_code == 403 and "more rights than its user" in too_strong.text
    created = client.post(
        "/account/tokens", data={"name": name, "role": "operator", "csrf_token": token}
    )
    assert created.status_code == 201
    secret = re.search(r'id="token-secret">(tdt_[^<]+)<', created.text)
    assert secret, "the secret is shown on the page that created it"
    assert secret.group(1) not in client.get("/account").text, "and never again"
    with httpx.Client(base_url=secured.server.base_url, headers=bearer(secret.group(1))) as api:
        assert api.get("/whoami").json() == {"kind": "token", "name": name, "role": "operator"}
        revoked = client.post(f"/account/tokens/{name}/revoke", data={"csrf_token": token})
        assert revoked.status_code == 200
        assert api.get("/whoami").status_code == 401
    viewer = log_in(secured, "viewer")
    others = viewer.post(
        "/account/tokens/operator-token/revoke", data={"csrf_token": csrf_of(viewer)}
    )
    assert others.status_code == 404, "nobody but an admin revokes another's token"
