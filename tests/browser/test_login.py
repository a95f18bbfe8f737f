"""Logging in to the dashboard in real headless Chromium: sessions, roles, CSRF and the CSP."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from tests.browser.conftest import Shoot
from tests.conftest import Wheelhouse, remove_containers
from tests.support import LiveServer, add_token, add_user, bearer, create_task, wait_run

OPERATOR = ("olivia", "olivia-secret-1")
VIEWER = ("victor", "victor-secret-1")
SESSION_COOKIE = "taskdash_session"
# One line, a pause (so the page is open before the rest arrives), then a second line.
TWO_LINES = "echo run $(cut -c1-8 /proc/sys/kernel/random/uuid)\nsleep 1\necho second line\n"
# Counts the lines the stream adds to #log (rather than the ones the page was rendered with).
COUNT_STREAMED = """
window.streamed = 0;
document.addEventListener("htmx:sseMessage", (event) => {
  if (event.target.id === "log") window.streamed += 1;
});
"""
# Every CSP violation, as the browser reports it to the page.
RECORD_VIOLATIONS = """
window.violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.violations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""
POST = """
async ([url, headers]) => {
  const answer = await fetch(url, {method: "POST", headers});
  return {status: answer.status, url: answer.url, text: await answer.text()};
}
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Its own name: a server's instance id (whose containers it owns) comes from it.
    folder = tmp_path_factory.mktemp("login") / "login-data"
    add_user(folder, *OPERATOR, role="operator")
    add_user(folder, *VIEWER, role="viewer")
    return folder


@pytest.fixture(scope="module")
def admin_token(data_dir: Path) -> str:
    return add_token(data_dir, "login-tests", "admin")


@pytest.fixture(scope="module")
def server(
    docker_engine: None, wheelhouse: Wheelhouse, data_dir: Path, admin_token: str
) -> Iterator[LiveServer]:
    """A server with users, so nobody is served anonymously. It stands in for the suite's
    `server` in this module, so the browser fixtures (`page`) run against it."""
    live = LiveServer(data_dir, env=wheelhouse.server_env()).start()
    yield live
    live.stop()
    remove_containers(live)


@pytest.fixture()
def client(server: LiveServer, admin_token: str) -> Iterator[httpx.Client]:
    """The API as an admin token: what the tests check the browser's actions against."""
    with server.client() as http:
        http.headers.update(bearer(admin_token))
        yield http


def log_in(page: Page, name: str, password: str) -> None:
    """Open the dashboard, get sent to the login page, log in, land on the task list."""
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next=/$"))
    submit_login(page, name, password)
    expect(page).to_have_url(re.compile(r":\d+/$"))
    expect(page.locator("#account-link")).to_have_text(name)


def submit_login(page: Page, name: str, password: str) -> None:
    form = page.locator("#login-form")
    form.get_by_label("User name").fill(name)
    form.get_by_label("Password").fill(password)
    form.get_by_role("button", name="Log in").click()


def session_cookies(page: Page) -> list[Any]:
    return [cookie for cookie in page.context.cookies() if cookie["name"] == SESSION_COOKIE]


def run_count(client: httpx.Client, task_id: str) -> int:
    response = client.get(f"/task/{task_id}/runs", params={"limit": 1})
    assert response.status_code == 200, response.text
    return int(response.headers["X-Total-Count"])


def page_csrf_token(page: Page) -> str:
    token: str = page.evaluate(
        "JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token']"
    )
    assert token, "a logged-in page carries its CSRF token"
    return token


def finished_task(client: httpx.Client, name: str) -> str:
    created = create_task(client, "echo ready\n", kind="sh", name=name)
    wait_run(client, created["task_id"], created["run_id"])
    return str(created["task_id"])


def test_operator_logs_in_uploads_runs_again_and_logs_out(
    page: Page, server: LiveServer, client: httpx.Client, shoot: Shoot
) -> None:
    page.add_init_script(COUNT_STREAMED)
    log_in(page, *OPERATOR)
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_text("Tasks")
    shoot(page, "logged-in")

    form = page.locator("#upload-form")
    form.get_by_label("Name").fill("after login")
    form.locator("label[for=type-shell]").click()
    form.get_by_label("…or paste the script").fill(TWO_LINES)
    form.get_by_role("button", name="Upload and run").click()
    page.wait_for_url(re.compile(r"/tasks/[0-9a-f-]{36}$"))
    task_id = page.url.rsplit("/", 1)[1]
    expect(page.get_by_role("heading", level=1)).to_have_text("after login")
    log = page.locator("#log")
    expect(log.locator("#L1 .tx")).to_have_text(re.compile(r"^run [0-9a-f]{8}$"), timeout=30_000)
    expect(log.locator("#L2 .tx")).to_have_text("second line", timeout=30_000)
    assert page.evaluate("window.streamed") >= 1, "the page got lines from the live stream"
    first_line = log.locator("#L1 .tx").inner_text()
    expect(page.locator("#task-status .badge")).to_have_text("succeeded", timeout=30_000)
    shoot(page, "first-run")

    token = page_csrf_token(page)  # before the click: the answer navigates to a new page
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/run")) as sent:
        page.get_by_role("button", name="Run now").click()
    assert sent.value.headers.get("x-csrf-token") == token, "htmx sends the body's hx-headers"
    expect(log.locator("#L1 .tx")).not_to_have_text(first_line, timeout=30_000)
    expect(log.locator("#L1 .tx")).to_have_text(re.compile(r"^run [0-9a-f]{8}$"))
    expect(log.locator("#L2 .tx")).to_have_text("second line", timeout=30_000)
    expect(page.locator("#task-status .badge")).to_have_text("succeeded", timeout=30_000)
    assert run_count(client, task_id) == 2
    runs = client.get(f"/task/{task_id}/runs").json()
    assert {(run["trigger"], run["started_by"]["name"]) for run in runs} == {
        ("dashboard", OPERATOR[0])
    }
    shoot(page, "second-run")

    secret = session_cookies(page)[0]["value"]
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    assert session_cookies(page) == [], "logging out removes the cookie"
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next=/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Log in")
    with server.client() as anonymous:
        # the server ended the session too: the old cookie opens nothing
        anonymous.cookies.set(SESSION_COOKIE, secret)
        assert anonymous.get("/whoami").status_code == 401


def test_wrong_password_shows_the_message_in_the_form(page: Page, shoot: Shoot) -> None:
    page.goto("/login")
    form = page.locator("#login-form")
    form.get_by_label("User name").fill(OPERATOR[0])
    form.get_by_label("Password").fill("not the password")
    with page.expect_response(lambda r: r.request.method == "POST") as answered:
        form.get_by_role("button", name="Log in").click()
    assert answered.value.status == 401
    expect(page.locator("#login-form [role=alert]")).to_have_text("wrong user name or password")
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.locator("#login-form").get_by_label("User name")).to_have_value(OPERATOR[0])
    expect(page.locator("#login-form").get_by_label("Password")).to_have_value("")
    expect(page.locator("#account-link")).to_have_count(0)
    assert session_cookies(page) == [], "no session for a wrong password"
    shoot(page, "wrong-password")


def test_viewer_sees_tasks_but_no_controls(page: Page, client: httpx.Client, shoot: Shoot) -> None:
    task_id = finished_task(client, "for viewers")
    log_in(page, *VIEWER)
    row = page.locator(f'tr[data-task-id="{task_id}"]')
    expect(row.get_by_role("link", name="for viewers")).to_be_visible()
    expect(row.locator(".badge")).to_have_text("succeeded")
    expect(page.locator("tbody").get_by_role("button")).to_have_count(0)
    expect(page.locator("#upload-form")).to_have_count(0)
    expect(page.get_by_role("link", name="New task")).to_have_count(0)
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    shoot(page, "list")

    row.get_by_role("link", name="for viewers").click()
    expect(page).to_have_url(re.compile(f"/tasks/{task_id}$"))
    expect(page.locator("#log #L1 .tx")).to_have_text("ready")
    expect(page.locator("#task-actions").get_by_role("button")).to_have_count(0)
    expect(page.locator("#schedule")).to_be_visible()
    expect(page.locator("#schedule form")).to_have_count(0)
    shoot(page, "task")

    answer = page.goto("/tasks/new")
    assert answer is not None and answer.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("That request was not accepted")
    expect(page.get_by_role("alert")).to_contain_text("this needs the operator role")
    expect(page.locator("#upload-form")).to_have_count(0)
    shoot(page, "forbidden")


def test_no_csp_violation_on_the_pages(page: Page, client: httpx.Client, shoot: Shoot) -> None:
    complaints: list[str] = []

    def listen(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            complaints.append(message.text)

    errors: list[str] = []
    page.on("console", listen)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.add_init_script(RECORD_VIOLATIONS + COUNT_STREAMED)

    def check(what: str) -> None:
        violations = page.evaluate("window.violations")
        assert (complaints, violations, errors) == ([], [], []), what

    login = page.goto("/login")
    assert login is not None
    policy = login.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    check("the login page")

    log_in(page, *OPERATOR)
    finished_task(client, "csp list")
    listed = page.goto("/")
    assert listed is not None
    assert listed.headers["content-security-policy"] == policy
    expect(page.locator("tbody tr").first).to_be_visible()
    check("the task list")

    created = create_task(client, TWO_LINES, kind="sh", name="csp live")
    shown = page.goto(f"/tasks/{created['task_id']}")
    assert shown is not None
    assert shown.headers["content-security-policy"] == policy
    expect(page.locator("#log #L2 .tx")).to_have_text("second line", timeout=30_000)
    expect(page.locator("#task-status .badge")).to_have_text("succeeded", timeout=30_000)
    expect(page.get_by_role("button", name="Run now")).to_be_visible()
    assert page.evaluate("window.streamed") >= 1, "lines came through the live stream"
    check("a task page with a live log")
    shoot(page, "live-task")

    page.goto("/account")
    expect(page.locator("#token-form")).to_be_visible()
    check("the account page")


def test_a_write_without_the_csrf_token_is_refused(page: Page, client: httpx.Client) -> None:
    task_id = finished_task(client, "csrf target")
    log_in(page, *OPERATOR)
    page.goto(f"/tasks/{task_id}")
    url = f"/tasks/{task_id}/run"
    assert run_count(client, task_id) == 1

    for headers in ({}, {"X-CSRF-Token": "not-the-token"}):
        refused = page.evaluate(POST, [url, headers])
        assert refused["status"] == 403, refused
        assert "CSRF token is missing or wrong" in refused["text"]
        # a run is recorded before the answer is sent, so none can still be on its way
        assert run_count(client, task_id) == 1, f"no run started with {headers}"

    started = page.evaluate(POST, [url, {"X-CSRF-Token": page_csrf_token(page)}])
    assert started["status"] == 200, started
    assert started["url"].endswith(f"/tasks/{task_id}")
    assert run_count(client, task_id) == 2
    newest = client.get(f"/task/{task_id}/runs").json()[0]
    assert newest["started_by"]["name"] == OPERATOR[0]
    wait_run(client, task_id, newest["run_id"])


def test_the_session_cookie_is_out_of_reach_of_scripts(page: Page) -> None:
    log_in(page, *OPERATOR)
    [cookie] = session_cookies(page)
    assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Lax")
    assert cookie["secure"] is False, "plain http here: a Secure cookie would never come back"
    assert SESSION_COOKIE not in page.evaluate("document.cookie")
    # the browser still sends it: the page's own requests are this session's
    who = page.evaluate("fetch('/whoami').then(answer => answer.json())")
    assert (who["kind"], who["name"], who["role"]) == ("user", OPERATOR[0], "operator")


def test_an_ended_session_sends_an_htmx_click_to_the_login_page_and_back(
    page: Page, client: httpx.Client
) -> None:
    task_id = finished_task(client, "session ends")
    log_in(page, *OPERATOR)
    page.goto(f"/tasks/{task_id}")
    page.context.clear_cookies()  # as when the session expired
    page.get_by_role("button", name="Run now").click()
    expect(page).to_have_url(re.compile(rf"/login\?next=/tasks/{task_id}$"))
    assert run_count(client, task_id) == 1
    submit_login(page, *OPERATOR)
    expect(page).to_have_url(re.compile(rf"/tasks/{task_id}$"))
    expect(page.get_by_role("button", name="Run now")).to_be_visible()


def test_the_password_field_looks_like_the_name_field(page: Page) -> None:
    page.goto("/login")
    form = page.locator("#login-form")
    name = form.get_by_label("User name").bounding_box()
    password = form.get_by_label("Password").bounding_box()
    assert name is not None and password is not None
    assert (password["width"], password["height"]) == (name["width"], name["height"]), (
        "the password field is styled like the other fields"
    )
