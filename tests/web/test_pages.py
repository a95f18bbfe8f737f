"""The dashboard's pages and fragments, through the real server: full pages and htmx fragments."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from quart import render_template, render_template_string

from taskdash import create_app
from taskdash.core.config import load_settings
from tests.support import LiveServer, create_task, wait_for, wait_run

HTMX = {"HX-Request": "true"}
SLOW = "import time\nprint('started', flush=True)\ntime.sleep(120)\n"


def html_of(response: httpx.Response, status: int = 200) -> str:
    assert response.status_code == status, response.text[:2000]
    assert response.headers["content-type"].startswith("text/html"), response.headers
    return response.text


def is_full_page(body: str) -> bool:
    return body.lstrip().lower().startswith("<!doctype html>") and "</html>" in body


def finished_task(
    client: httpx.Client, script: str, kind: str = "py", **form: Any
) -> dict[str, Any]:
    created = create_task(client, script, kind=kind, **form)
    wait_run(client, created["task_id"], created["run_id"])
    return created


def running_task(client: httpx.Client) -> dict[str, Any]:
    created = create_task(client, SLOW)
    wait_run(client, created["task_id"], created["run_id"], status={"running"})
    return created


# the status badge macro (rendered by the streams too) -------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("running", '<span class="badge badge-running" role="status">running</span>'),
        ("succeeded", '<span class="badge badge-succeeded" role="status">succeeded</span>'),
        ("timed_out", '<span class="badge badge-timed_out" role="status">timed_out</span>'),
        (None, '<span class="badge badge-none" role="status">never run</span>'),
    ],
)
async def test_status_badge_macro(status: str | None, expected: str, tmp_path: Any) -> None:
    app = create_app(load_settings(data_dir=tmp_path))
    source = '{% from "_partials.html" import status_badge %}{{ status_badge(status) }}'
    async with app.app_context():
        assert await render_template_string(source, status=status) == expected


# the task list and the upload form ------------------------------------------------------------


def test_index_is_a_full_page_with_the_upload_form(client: httpx.Client) -> None:
    body = html_of(client.get("/"))
    assert is_full_page(body)
    assert re.search(r"<title>[^<]*taskdash[^<]*</title>", body)
    for name in ("file", "requirements", "upload", "script_type", "name", "script"):
        assert f'name="{name}"' in body, name
    assert 'value="python"' in body and 'value="shell"' in body
    assert 'enctype="multipart/form-data"' in body
    assert '<main id="main"' in body and 'sse-connect="/ui/events"' in body
    # after a burst the feed asks for the table again (this page of it)
    assert 'hx-get="/?page=1" hx-trigger="sse:refresh" hx-target="#tasks"' in body
    # vendored, never from a CDN
    assert 'src="/static/htmx.min.js"' in body and 'src="/static/sse.js"' in body
    assert "https://" not in body


def test_index_fragment_for_htmx(client: httpx.Client) -> None:
    created = finished_task(client, "echo listed\n", kind="sh")
    body = html_of(client.get("/", headers=HTMX))
    assert not is_full_page(body)
    assert body.lstrip().startswith('<div id="tasks">')
    assert f'data-task-id="{created["task_id"]}"' in body
    assert f'sse-swap="task-{created["task_id"]}"' in body
    assert client.get("/").headers["vary"] == "HX-Request"


def test_list_row_shows_status_times_and_actions(client: httpx.Client) -> None:
    created = finished_task(client, "echo hi\n", kind="sh", name="row <check>")
    body = html_of(client.get("/"))
    row = re.search(rf'<tr id="task-{created["task_id"]}".*?</tr>', body, re.S)
    assert row is not None
    text = row.group(0)
    assert "row &lt;check&gt;" in text and "row <check>" not in text
    assert '<span class="badge badge-succeeded" role="status">succeeded</span>' in text
    assert "<time datetime=" in text
    assert re.search(r"\d+\.\d+ s", text), "the duration"
    assert f'action="/tasks/{created["task_id"]}/run"' in text
    assert "hx-confirm=" in text


@pytest.mark.parametrize("htmx", [False, True])
def test_upload_creates_runs_and_redirects_to_the_task(client: httpx.Client, htmx: bool) -> None:
    response = client.post(
        "/tasks",
        data={"name": "from the form", "script_type": "shell", "script": "echo via form\n"},
        files={"file": ("", b"")},
        headers=HTMX if htmx else {},
    )
    if htmx:
        assert response.status_code == 200
        location = response.headers["HX-Redirect"]
    else:
        assert response.status_code == 303
        location = response.headers["Location"]
    task_id = location.removeprefix("/tasks/")
    assert re.fullmatch(r"[0-9a-f-]{36}", task_id), location
    detail = client.get(f"/task/{task_id}").json()
    assert (detail["name"], detail["script_type"]) == ("from the form", "shell")
    run = wait_run(client, task_id, detail["last_run"]["run_id"])
    assert (run["status"], run["trigger"]) == ("succeeded", "dashboard")


def test_upload_with_a_file_and_requirements_text(client: httpx.Client, wheelhouse: Any) -> None:
    response = client.post(
        "/tasks",
        data={"script_type": "python", "requirements": wheelhouse.requirement, "upload": "true"},
        files={"file": ("probe.py", b"import tdprobe\nprint(tdprobe.VALUE)\n")},
    )
    assert response.status_code == 303, response.text
    task_id = response.headers["Location"].removeprefix("/tasks/")
    detail = client.get(f"/task/{task_id}").json()
    assert detail["name"] == "probe.py"
    assert detail["requirements"] == wheelhouse.requirement
    page = html_of(client.get(f"/tasks/{task_id}"))
    assert wheelhouse.requirement in page


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        ({"script_type": "python"}, 400, "Choose a script file, or paste the script"),
        ({"script_type": "perl", "script": "print 1"}, 400, "choose a script type"),
        ({"script_type": "shell", "script": "echo", "requirements": "x"}, 400, "only applies"),
        ({"script_type": "python", "script": "   "}, 400, "Choose a script file"),
        ({"script_type": "python", "script": "x", "name": "n" * 201}, 400, "longer than 200"),
    ],
)
@pytest.mark.parametrize("htmx", [False, True])
def test_bad_upload_shows_the_message_next_to_the_form(
    client: httpx.Client, data: dict[str, str], status: int, message: str, htmx: bool
) -> None:
    data = {"name": "kept name", **data}
    response = client.post(
        "/tasks", data=data, files={"file": ("", b"")}, headers=HTMX if htmx else {}
    )
    body = html_of(response, status)
    assert is_full_page(body) is not htmx
    form = re.search(r'<form id="upload-form".*?</form>', body, re.S)
    assert form is not None
    assert 'role="alert"' in form.group(0) and message in form.group(0)
    if "n" * 201 not in data.get("name", ""):
        assert 'value="kept name"' in form.group(0), "what was typed comes back"
    assert "Traceback" not in body and '{"error": {' not in body


def test_too_large_upload_is_a_clear_message(make_server: Callable[..., LiveServer]) -> None:
    live = make_server(max_script_bytes="1000")
    with live.client() as client:
        response = client.post(
            "/tasks",
            data={"script_type": "python", "script": "x" * 5000},
            files={"file": ("", b"")},
        )
        body = html_of(response, 413)
        assert "1000 bytes" in body and 'role="alert"' in body
        huge = client.post(
            "/tasks",
            data={"script_type": "python"},
            files={"file": ("big.py", b"#" * 200_000)},
            headers=HTMX,
        )
        body = html_of(huge, 413)
        assert body.lstrip().startswith('<form id="upload-form"'), "shown next to the form"
        assert "too large" in body and "<html" not in body


def test_new_task_page_and_fragment(client: httpx.Client) -> None:
    body = html_of(client.get("/tasks/new"))
    assert is_full_page(body) and 'id="upload-form"' in body
    fragment = html_of(client.get("/tasks/new", headers=HTMX))
    assert fragment.lstrip().startswith('<form id="upload-form"')


def test_pagination(make_server: Callable[..., LiveServer]) -> None:
    live = make_server(page_size="2")
    with live.client() as client:
        ids = [
            create_task(client, f"echo {i}\n", kind="sh", name=f"task {i}")["task_id"]
            for i in range(3)
        ]
        first = html_of(client.get("/"))
        assert first.count("data-task-id=") == 2
        assert ids[2] in first and ids[1] in first, "newest first"
        assert "Page 1 of 2" in first and 'href="/?page=2"' in first
        second = html_of(client.get("/?page=2", headers=HTMX))
        assert second.count("data-task-id=") == 1 and ids[0] in second
        assert 'href="/?page=1"' in second and "<html" not in second
        beyond = html_of(client.get("/?page=3"))
        assert "There is no page 3" in beyond
        bad = html_of(client.get("/?page=zero"), 400)
        assert "&#39;page&#39; must be a whole number" in bad and is_full_page(bad)


# the task page ----------------------------------------------------------------------------


def test_task_page_of_a_finished_run(client: httpx.Client) -> None:
    script = "print('first')\nprint('\\x1b[31mred\\x1b[0m <b>not bold</b>')\n"
    created = finished_task(client, script, name="finished")
    body = html_of(client.get(f"/tasks/{created['task_id']}"))
    assert is_full_page(body)
    assert "<title>finished · taskdash</title>" in body
    # the script, numbered, escaped
    assert '<span class="cn" aria-hidden="true">1</span>print(&#39;first&#39;)' in body
    # the stored log, rendered server-side like the stream's lines
    assert (
        '<div class="line" id="L1"><span class="ln">1</span><span class="tx">first</span></div>'
        in body
    )
    assert '<span class="ansi-fg-31">red</span> &lt;b&gt;not bold&lt;/b&gt;' in body
    assert 'id="log"' in body and 'role="log"' in body and 'aria-live="polite"' in body
    # A finished run: the stream only waits for the task's next run; no live log swap.
    stream = f"/ui/tasks/{created['task_id']}/stream?run_id={created['run_id']}&amp;after=2"
    assert f'sse-connect="{stream}" sse-close="run"' in body
    assert 'hx-trigger="sse:run"' in body
    assert 'sse-swap="line"' not in body
    # history, chart, docker info, schedule form
    assert f'href="/tasks/{created["task_id"]}/runs/{created["run_id"]}"' in body
    assert "<svg" in body and 'class="bar bar-succeeded"' in body
    assert "Container" in body and "taskdash/python:bookworm" in body
    assert 'name="cron_expression"' in body
    assert f"/tasks/{created['task_id']}/runs/{created['run_id']}/log.txt" in body


def test_task_page_of_a_live_run_connects_the_stream(client: httpx.Client) -> None:
    created = running_task(client)
    task_id, run_id = created["task_id"], created["run_id"]
    try:
        body = html_of(client.get(f"/tasks/{task_id}"))
        stream = f"/ui/tasks/{task_id}/stream?run_id={run_id}&amp;after="
        assert f'sse-connect="{stream}' in body
        assert 'sse-close="run"' in body
        assert 'sse-swap="line" hx-swap="beforeend"' in body
        assert 'sse-swap="status,end"' in body
        assert 'id="stop-button"' in body
        # The run is `running` a moment before its container exists.
        wait_for(
            lambda: "live <code>docker inspect</code>" in client.get(f"/tasks/{task_id}").text,
            what="the live docker inspect",
        )
    finally:
        client.post(f"/task/{task_id}/stop")


def test_task_page_fragments(client: httpx.Client) -> None:
    created = finished_task(client, "echo parts\n", kind="sh")
    task_id = created["task_id"]
    main = html_of(client.get(f"/tasks/{task_id}", headers=HTMX))
    assert main.lstrip().startswith('<div id="task-view"') and "<html" not in main
    row = html_of(client.get(f"/tasks/{task_id}/row"))
    assert row.lstrip().startswith(f'<tr id="task-{task_id}"')
    history = html_of(client.get(f"/tasks/{task_id}/history", headers=HTMX))
    assert history.lstrip().startswith('<div id="task-history"') and "exit code" in history.lower()
    actions = html_of(client.get(f"/tasks/{task_id}/actions", headers=HTMX))
    assert actions.lstrip().startswith('<div id="task-actions"') and "Run now" in actions
    assert is_full_page(html_of(client.get(f"/tasks/{task_id}/history")))


def test_task_created_without_upload_cannot_be_rerun(client: httpx.Client) -> None:
    created = finished_task(client, "echo once\n", kind="sh", upload="false")
    body = html_of(client.get(f"/tasks/{created['task_id']}"))
    assert "The script was not kept" in body
    assert 'id="run-button" disabled' in body
    answer = client.post(f"/tasks/{created['task_id']}/run", headers=HTMX, data={"view": "row"})
    html_of(answer, 409)
    assert answer.headers["HX-Retarget"] == "#flash"


# runs --------------------------------------------------------------------------------------


def test_run_page_and_log_download(client: httpx.Client) -> None:
    created = finished_task(client, "echo one\necho '<script>x</script>'\nexit 4\n", kind="sh")
    task_id, run_id = created["task_id"], created["run_id"]
    body = html_of(client.get(f"/tasks/{task_id}/runs/{run_id}"))
    assert is_full_page(body)
    assert '<span class="badge badge-failed" role="status">failed</span>' in body
    assert "&lt;script&gt;x&lt;/script&gt;" in body and "<script>x</script>" not in body
    assert "Exit code" in body and ">4<" in body
    fragment = html_of(client.get(f"/tasks/{task_id}/runs/{run_id}", headers=HTMX))
    assert fragment.lstrip().startswith('<div id="run-view"')
    raw = client.get(f"/tasks/{task_id}/runs/{run_id}/log.txt")
    assert raw.status_code == 200
    assert raw.headers["content-type"].startswith("text/plain")
    assert raw.headers["content-disposition"] == f'attachment; filename="run-{run_id}.log"'
    assert raw.text == "one\n<script>x</script>\n"


# actions -----------------------------------------------------------------------------------


def test_run_from_the_list_answers_the_row(client: httpx.Client) -> None:
    created = finished_task(client, "echo again\n", kind="sh", name="rerun me")
    task_id = created["task_id"]
    response = client.post(f"/tasks/{task_id}/run", data={"view": "row"}, headers=HTMX)
    body = html_of(response)
    assert body.lstrip().startswith(f'<tr id="task-{task_id}"')
    assert 'hx-swap-oob="true"' in body and "Started “rerun me”." in body
    runs = client.get(f"/task/{task_id}/runs").json()
    assert len(runs) == 2 and runs[0]["trigger"] == "dashboard"
    wait_run(client, task_id, runs[0]["run_id"])


def test_run_from_the_task_page_redirects_to_it(client: httpx.Client) -> None:
    created = finished_task(client, "echo again\n", kind="sh")
    task_id = created["task_id"]
    response = client.post(f"/tasks/{task_id}/run", headers=HTMX)
    assert response.headers["HX-Redirect"] == f"/tasks/{task_id}"
    plain = client.post(f"/tasks/{task_id}/run")
    assert (plain.status_code, plain.headers["Location"]) == (303, f"/tasks/{task_id}")
    for run in client.get(f"/task/{task_id}/runs").json():
        wait_run(client, task_id, run["run_id"])


def test_stop_from_the_list(client: httpx.Client) -> None:
    created = running_task(client)
    task_id = created["task_id"]
    body = html_of(client.post(f"/tasks/{task_id}/stop", data={"view": "row"}, headers=HTMX))
    assert '<span class="badge badge-stopped" role="status">stopped</span>' in body
    assert wait_run(client, task_id, created["run_id"])["status"] == "stopped"


def test_stop_when_nothing_runs_is_a_message(client: httpx.Client) -> None:
    created = finished_task(client, "echo done\n", kind="sh")
    task_id = created["task_id"]
    fragment = client.post(f"/tasks/{task_id}/stop", data={"view": "row"}, headers=HTMX)
    body = html_of(fragment, 409)
    assert fragment.headers["HX-Retarget"] == "#flash"
    assert fragment.headers["HX-Reswap"] == "innerHTML"
    assert 'class="alert alert-error" role="alert"' in body and "no queued or running run" in body
    page = html_of(client.post(f"/tasks/{task_id}/stop"), 409)
    assert is_full_page(page) and "no queued or running run" in page


def test_delete_asks_first(client: httpx.Client) -> None:
    created = finished_task(client, "echo bye\n", kind="sh", name="doomed")
    task_id = created["task_id"]
    ask = html_of(client.get(f"/tasks/{task_id}/delete"))
    assert "Delete “doomed”?" in ask and 'name="confirmed" value="yes"' in ask
    unconfirmed = html_of(client.post(f"/tasks/{task_id}/delete"))
    assert "Delete “doomed”?" in unconfirmed
    assert client.get(f"/task/{task_id}").status_code == 200, "nothing deleted without confirming"
    done = client.post(f"/tasks/{task_id}/delete", data={"confirmed": "yes"})
    assert (done.status_code, done.headers["Location"]) == (303, "/")
    assert client.get(f"/task/{task_id}").status_code == 404


def test_delete_from_the_list_with_htmx(client: httpx.Client) -> None:
    created = finished_task(client, "echo bye\n", kind="sh", name="row doomed")
    task_id = created["task_id"]
    body = html_of(
        client.post(
            f"/tasks/{task_id}/delete", data={"confirmed": "yes", "view": "row"}, headers=HTMX
        )
    )
    assert 'hx-swap-oob="true"' in body and "Deleted “row doomed”." in body
    assert client.get(f"/task/{task_id}").status_code == 404
    page = client.post(f"/tasks/{task_id}/delete", data={"confirmed": "yes"}, headers=HTMX)
    html_of(page, 404)


def test_schedule_form_refuses_a_bad_cron_in_the_card(client: httpx.Client) -> None:
    created = finished_task(client, "echo sched\n", kind="sh")
    task_id = created["task_id"]
    for data, message in (
        ({"cron_expression": "not a cron"}, "cron needs 5"),
        ({"cron_expression": "* * * * *", "overlap": "sometimes"}, "'overlap' must be one of"),
        ({"cron_expression": "* * * * *", "timezone": "Mars/Olympus"}, "Mars/Olympus"),
        ({"cron_expression": " "}, "'cron_expression' is required"),
    ):
        response = client.post(f"/tasks/{task_id}/schedule", data=data, headers=HTMX)
        body = html_of(response, 400)
        assert body.lstrip().startswith('<section id="schedule"')
        assert 'role="alert"' in body and message in body.replace("&#39;", "'"), body
    assert client.get(f"/task/{task_id}/schedule").status_code == 404  # nothing was saved


def test_schedule_form_sets_the_policy_then_pauses_resumes_and_removes(
    client: httpx.Client,
) -> None:
    task_id = finished_task(client, "echo sched\n", kind="sh")["task_id"]
    path = f"/tasks/{task_id}/schedule"
    form = {"cron_expression": "0 9 * * 1-5", "timezone": "Europe/Paris", "overlap": "queue"}
    body = html_of(client.post(path, data=form, headers=HTMX))
    assert '<option value="queue" selected>' in body
    assert 'id="schedule-pause"' in body
    assert re.search(r"(Mon|Tue|Wed|Thu|Fri) \d{4}-\d\d-\d\d 09:00 CES?T", body), body
    assert client.get(f"/task/{task_id}/schedule").json()["overlap"] == "queue"

    body = html_of(client.post(path, data=form | {"enabled": "false"}, headers=HTMX))
    assert 'id="schedule-paused"' in body and 'id="schedule-resume"' in body
    assert "Next runs" not in body
    # Editing the expression of a paused schedule keeps it paused (the form omits `enabled`).
    html_of(client.post(path, data=form | {"cron_expression": "30 9 * * 1-5"}, headers=HTMX))
    saved = client.get(f"/task/{task_id}/schedule").json()
    assert (saved["cron_expression"], saved["enabled"], saved["overlap"]) == (
        "30 9 * * 1-5",
        False,
        "queue",
    )

    body = html_of(client.post(path, data=form | {"enabled": "true"}, headers=HTMX))
    assert 'id="schedule-pause"' in body and "Next runs" in body
    assert client.get(f"/task/{task_id}/schedule").json()["enabled"] is True

    body = html_of(client.post(f"{path}/delete", data={}, headers=HTMX))
    assert "Remove" not in body and client.get(f"/task/{task_id}/schedule").status_code == 404


async def test_schedule_card_shows_recent_slots_on_the_schedules_clock(tmp_path: Any) -> None:
    app = create_app(load_settings(data_dir=tmp_path))
    schedule = {
        "cron_expression": "*/15 * * * *",
        "timezone": "America/New_York",
        "enabled": True,
        "overlap": "skip",
        "next_run_times": ["2024-11-03T01:30:00-05:00"],
        "recent_slots": [
            {
                "slot_at": "2024-11-03T05:15:00Z",
                "outcome": "fired",
                "run_id": UNKNOWN,
                "catch_up": True,
                "missed_before": 3,
                "reason": "",
            },
            {
                "slot_at": "2024-11-03T05:00:00Z",
                "outcome": "skipped",
                "run_id": None,
                "catch_up": False,
                "missed_before": 0,
                "reason": "a run of this task was still active",
            },
        ],
    }
    task = {"id": UNKNOWN, "script_kept": True}
    async with app.app_context():
        body = await render_template("_schedule.html", task=task, schedule=schedule)
    assert "Sun 2024-11-03 01:30 EST" in body
    assert '<span class="slot slot-fired">fired</span>' in body
    assert "Sun 2024-11-03 01:15 EDT" in body and "catch-up" in body
    assert f'href="/tasks/{UNKNOWN}/runs/{UNKNOWN}"' in body
    assert "skipped" in body and "a run of this task was still active" in body


# errors ------------------------------------------------------------------------------------


UNKNOWN = "00000000-0000-4000-8000-000000000000"


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        (f"/tasks/{UNKNOWN}", 404, f"no task with id {UNKNOWN}"),
        (f"/tasks/{UNKNOWN}/runs/{UNKNOWN}", 404, f"no task with id {UNKNOWN}"),
        (f"/tasks/{UNKNOWN}/runs/{UNKNOWN}/log.txt", 404, "no task with id"),
        ("/tasks/not-a-task", 400, "is not a valid task id"),
    ],
)
def test_error_pages(client: httpx.Client, path: str, status: int, message: str) -> None:
    body = html_of(client.get(path), status)
    assert is_full_page(body)
    assert message in body.replace("&#39;", "'")
    assert "Back to the task list" in body
    fragment = client.get(path, headers=HTMX)
    assert fragment.headers["HX-Retarget"] == "#flash"
    assert not is_full_page(html_of(fragment, status))


BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def test_an_unknown_url_answers_a_page_to_a_browser_and_json_to_the_rest(
    client: httpx.Client,
) -> None:
    body = html_of(client.get("/no/such/page", headers=BROWSER), 404)
    assert is_full_page(body)
    assert "no such endpoint: GET /no/such/page" in body
    assert "Back to the task list" in body
    for accept in ("*/*", "application/json", "application/json, text/html;q=0.5"):
        response = client.get("/no/such/page", headers={"Accept": accept})
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    # The API's own errors stay JSON whatever the client accepts.
    response = client.get(f"/task/{UNKNOWN}", headers=BROWSER)
    assert (response.status_code, response.json()["error"]["code"]) == (404, "task_not_found")


def test_unknown_run_of_a_known_task(client: httpx.Client) -> None:
    created = finished_task(client, "echo x\n", kind="sh")
    body = html_of(client.get(f"/tasks/{created['task_id']}/runs/{UNKNOWN}"), 404)
    assert f"has no run with id {UNKNOWN}" in body


def test_static_files_are_served(client: httpx.Client) -> None:
    for name, kind in (
        ("htmx.min.js", "javascript"),
        ("sse.js", "javascript"),
        ("app.js", "javascript"),
        ("app.css", "css"),
    ):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and kind in response.headers["content-type"], name
    assert 'version:"2.' in client.get("/static/htmx.min.js").text.replace(" ", "")


def test_api_routes_still_answer_json(client: httpx.Client) -> None:
    """The pages blueprint is registered first: it must not shadow `GET /<task_id>`."""
    created = finished_task(client, "echo api\n", kind="sh")
    answer = client.get(f"/{created['task_id']}")
    assert answer.status_code == 200 and answer.json()["task_id"] == created["task_id"]
    assert wait_for(lambda: client.get("/task/").status_code == 200)
