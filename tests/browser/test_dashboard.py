"""The dashboard in real headless Chromium: upload, live log and badges, stop, delete, escaping."""

from __future__ import annotations

import itertools
import re
from typing import Any

import httpx
from playwright.sync_api import Dialog, Page, expect

from tests.browser.conftest import Shoot
from tests.support import create_task, wait_run

TICKER = (
    "import time\n"
    "for i in range(1, 7):\n"
    "    print(f'\\x1b[32mtick\\x1b[0m {i}', flush=True)\n"
    "    time.sleep(1)\n"
)
FOREVER = (
    "import time\nfor i in range(600):\n    print(f'line {i}', flush=True)\n    time.sleep(1)\n"
)
HOSTILE = (
    "import time\n"
    "print('<script>window.pwned = 1</script>', flush=True)\n"
    "time.sleep(1.5)\n"
    "print('<img src=x onerror=\"window.pwned = 2\"> & <b>not bold</b>', flush=True)\n"
)
# Records each line the stream adds to #log, with its arrival time.
RECORD_LINES = """
window.arrivals = [];
document.addEventListener("htmx:sseMessage", (event) => {
  if (event.target.id === "log") {
    window.arrivals.push([Number(event.detail.lastEventId), performance.now()]);
  }
});
"""


def upload(page: Page, name: str, script: str) -> str:
    """Fill the upload form on the list page, submit it, and answer the new task's id."""
    page.goto("/")
    form = page.locator("#upload-form")
    form.get_by_label("Name").fill(name)
    form.locator("label[for=type-python]").click()
    form.get_by_label("…or paste the script").fill(script)
    form.get_by_role("button", name="Upload and run").click()
    page.wait_for_url(re.compile(r"/tasks/[0-9a-f-]{36}$"))
    return page.url.rsplit("/", 1)[1]


def badge(page: Page, selector: str) -> Any:
    return page.locator(f"{selector} .badge")


def test_upload_and_watch_the_lines_arrive_one_by_one(
    page: Page, client: httpx.Client, shoot: Shoot
) -> None:
    page.add_init_script(RECORD_LINES)
    task_id = upload(page, "ticker", TICKER)
    log = page.locator("#log")
    expect(log.locator(".line")).to_have_count(3, timeout=30_000)
    shoot(page, "streaming")
    expect(badge(page, "#task-status")).to_have_text("running")
    expect(log.locator(".line")).to_have_count(6, timeout=30_000)
    expect(badge(page, "#task-status")).to_have_text("succeeded", timeout=30_000)
    texts = log.locator(".line .tx").all_inner_texts()
    assert texts == [f"tick {i}" for i in range(1, 7)]
    assert log.locator(".line .tx .ansi-fg-32").first.inner_text() == "tick"
    arrivals: list[list[float]] = page.evaluate("window.arrivals")
    numbers = [int(number) for number, _ in arrivals]
    assert numbers == sorted(set(numbers)), f"each line once, in order: {numbers}"
    assert len(numbers) >= 3, f"most lines should come through the stream: {numbers}"
    gaps = [later[1] - earlier[1] for earlier, later in itertools.pairwise(arrivals)]
    assert all(gap > 500 for gap in gaps), f"lines arrive one by one, about 1 s apart: {gaps}"
    # the history refreshed itself when the run ended
    expect(page.locator("#task-history .badge-succeeded")).to_have_count(1)
    expect(page.locator("#run-button")).to_be_visible()
    run = client.get(f"/task/{task_id}").json()["last_run"]
    assert (run["status"], run["trigger"]) == ("succeeded", "dashboard")
    shoot(page, "finished")


def test_list_badge_changes_without_reload(page: Page, client: httpx.Client, shoot: Shoot) -> None:
    created = create_task(client, "sleep 4\necho done\n", kind="sh", name="badge watcher")
    page.goto("/")
    row = page.locator(f'tr[data-task-id="{created["task_id"]}"]')
    expect(badge(page, f'tr[data-task-id="{created["task_id"]}"]')).to_have_text(
        re.compile("queued|running")
    )
    page.evaluate("window.sameDocument = true")
    shoot(page, "running")
    expect(row.locator(".badge")).to_have_text("succeeded", timeout=30_000)
    assert page.evaluate("window.sameDocument") is True, "the page was not reloaded"
    expect(row.get_by_role("button", name="Run badge watcher")).to_be_visible()
    shoot(page, "succeeded")


def test_the_task_page_switches_to_a_run_started_elsewhere(
    page: Page, client: httpx.Client, shoot: Shoot
) -> None:
    script = "echo run $(cat /proc/sys/kernel/random/uuid | cut -c1-8)\nsleep 2\necho second line\n"
    created = create_task(client, script, kind="sh", name="started elsewhere")
    task_id = created["task_id"]
    wait_run(client, task_id, created["run_id"])
    page.goto(f"/tasks/{task_id}")
    expect(page.locator("#log .line")).to_have_count(2)
    first_line = page.locator("#log #L1 .tx").inner_text()
    page.evaluate("window.sameDocument = true")

    started = client.put(f"/task/{task_id}")  # as a schedule, a script or another tab would
    assert started.status_code == 202
    run_id = started.json()["run_id"]

    link = page.locator(f'a[href="/tasks/{task_id}/runs/{run_id}"]').first
    expect(link).to_be_visible(timeout=30_000)
    expect(page.locator("#log #L2 .tx")).to_have_text("second line", timeout=30_000)
    assert page.locator("#log #L1 .tx").inner_text() != first_line
    expect(badge(page, "#task-status")).to_have_text("succeeded", timeout=30_000)
    assert page.evaluate("window.sameDocument") is True, "the page was not reloaded"
    shoot(page, "switched-to-new-run")


def test_schedule_from_the_task_page_then_pause_and_resume(
    page: Page, client: httpx.Client, shoot: Shoot
) -> None:
    created = create_task(client, "echo scheduled\n", kind="sh", name="nightly")
    wait_run(client, created["task_id"], created["run_id"])
    page.goto(f"/tasks/{created['task_id']}")
    card = page.locator("#schedule")
    card.get_by_label("Cron expression").fill("0 2 * * *")
    card.get_by_label("Time zone").fill("Europe/Paris")
    card.get_by_label("While a run is still active").select_option("queue")
    card.get_by_role("button", name="Schedule").click()
    expect(card.locator(".times li")).to_have_count(5)
    expect(card.locator(".times li").first).to_contain_text("02:00 CE")
    shoot(page, "scheduled")

    card.get_by_role("button", name="Pause").click()
    expect(card.locator("#schedule-paused")).to_be_visible()
    assert client.get(f"/task/{created['task_id']}/schedule").json()["enabled"] is False
    card.get_by_role("button", name="Resume").click()
    expect(card.locator("#schedule-pause")).to_be_visible()
    saved = client.get(f"/task/{created['task_id']}/schedule").json()
    assert (saved["enabled"], saved["overlap"], saved["timezone"]) == (
        True,
        "queue",
        "Europe/Paris",
    )


def test_stop_a_run_from_its_page(page: Page, client: httpx.Client, shoot: Shoot) -> None:
    created = create_task(client, FOREVER, name="endless")
    page.goto(f"/tasks/{created['task_id']}")
    page.locator("#log #L2").wait_for(timeout=30_000)
    page.get_by_role("button", name="Stop").click()
    expect(badge(page, "#task-status")).to_have_text("stopped", timeout=30_000)
    assert wait_run(client, created["task_id"], created["run_id"])["status"] == "stopped"
    expect(page.locator("#run-button")).to_be_visible()
    shoot(page, "stopped")


def test_delete_asks_for_confirmation(page: Page, client: httpx.Client, shoot: Shoot) -> None:
    created = create_task(client, "echo short\n", kind="sh", name="delete me")
    wait_run(client, created["task_id"], created["run_id"])
    page.goto("/")
    row = page.locator(f'tr[data-task-id="{created["task_id"]}"]')
    delete = row.get_by_role("button", name="Delete delete me")
    messages: list[str] = []

    def refuse(dialog: Dialog) -> None:
        messages.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", refuse)
    delete.click()
    expect(row).to_be_visible()
    assert messages and "Delete “delete me”" in messages[0]
    assert client.get(f"/task/{created['task_id']}").status_code == 200

    page.once("dialog", lambda dialog: dialog.accept())
    delete.click()
    expect(row).to_have_count(0)
    expect(page.locator("#flash")).to_contain_text("Deleted “delete me”.")
    assert client.get(f"/task/{created['task_id']}").status_code == 404
    shoot(page, "deleted")


def test_delete_from_the_task_page(page: Page, client: httpx.Client) -> None:
    created = create_task(client, "echo short\n", kind="sh", name="delete from page")
    page.goto(f"/tasks/{created['task_id']}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").click()
    page.wait_for_url(re.compile(r"/$"))
    assert client.get(f"/task/{created['task_id']}").status_code == 404


def test_printed_markup_shows_as_text(page: Page, shoot: Shoot) -> None:
    upload(page, "hostile", HOSTILE)
    log = page.locator("#log")
    expect(badge(page, "#task-status")).to_have_text("succeeded", timeout=30_000)
    expected = [
        "<script>window.pwned = 1</script>",
        '<img src=x onerror="window.pwned = 2"> & <b>not bold</b>',
    ]
    for view in ("streamed", "stored"):
        assert log.locator(".line .tx").all_inner_texts() == expected, view
        assert log.locator("script, img, b").count() == 0, view
        assert page.evaluate("window.pwned") is None, view
        shoot(page, view)
        page.reload()


def test_bad_upload_shows_the_message_in_the_form(page: Page, shoot: Shoot) -> None:
    page.goto("/")
    form = page.locator("#upload-form")
    form.get_by_label("Name").fill("nothing to run")
    form.get_by_role("button", name="Upload and run").click()
    alert = page.locator("#upload-form [role=alert]")
    expect(alert).to_contain_text("Choose a script file, or paste the script")
    expect(page.locator("#upload-form").get_by_label("Name")).to_have_value("nothing to run")
    assert page.url.endswith("/")
    shoot(page, "error")


def test_unknown_task_is_a_readable_page(page: Page, shoot: Shoot) -> None:
    page.goto("/tasks/00000000-0000-4000-8000-000000000000")
    expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    expect(page.get_by_role("alert")).to_contain_text("no task with id")
    shoot(page, "not-found")


def test_log_follows_unless_scrolled_up(page: Page, client: httpx.Client) -> None:
    script = (
        "import time\n"
        "for i in range(120):\n    print(i)\n"
        "for i in range(120, 400):\n    print(i, flush=True)\n    time.sleep(0.05)\n"
    )
    created = create_task(client, script, name="scroller")
    page.goto(f"/tasks/{created['task_id']}")
    log = page.locator("#log")
    log.locator("#L150").wait_for(timeout=30_000)
    distance = "el => el.scrollHeight - el.scrollTop - el.clientHeight"
    assert log.evaluate(distance) < 60, "following the end"
    log.evaluate("el => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); }")
    log.locator("#L220").wait_for(timeout=30_000)
    assert log.evaluate("el => el.scrollTop") == 0, "left where the person scrolled"
    follow = page.locator("#log-follow")
    expect(follow).to_be_visible()
    follow.click()
    log.locator("#L260").wait_for(timeout=30_000)
    assert log.evaluate(distance) < 60, "following again"
    client.post(f"/task/{created['task_id']}/stop")


def test_screenshots_at_phone_width_and_in_dark_mode(
    page: Page, client: httpx.Client, shoot: Shoot
) -> None:
    created = create_task(client, TICKER, name="phone view")
    wait_run(client, created["task_id"], created["run_id"])
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "no sideways scroll"
    shoot(page, "phone-list")
    page.goto(f"/tasks/{created['task_id']}")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "no sideways scroll"
    shoot(page, "phone-task")
    page.emulate_media(color_scheme="dark")
    page.set_viewport_size({"width": 1280, "height": 900})
    shoot(page, "dark-task")
    page.goto("/")
    shoot(page, "dark-list")
    page.goto(f"/tasks/{created['task_id']}/runs/{created['run_id']}")
    shoot(page, "dark-run")
