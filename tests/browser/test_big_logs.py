"""A 10 MiB log: the pages show its tail quickly and stay responsive; the download has it all."""

from __future__ import annotations

import time

import httpx
from playwright.sync_api import Page, expect

from tests.browser.conftest import Shoot
from tests.support import create_task, wait_run

# Near the 10 MiB cap: 115,000 numbered lines of 88 bytes.
BIG = (
    "import sys\n"
    "pad = 'x' * 80\n"
    "for i in range(1, 115001):\n"
    "    sys.stdout.write(f'{i:07d} {pad}\\n')\n"
)
# A live flood: more lines than a page keeps, printed while the page follows.
FLOOD = (
    "import sys, time\n"
    "for i in range(1, 15001):\n"
    "    print(f'line {i}')\n"
    "    if i % 1000 == 0:\n"
    "        sys.stdout.flush()\n"
    "        time.sleep(0.1)\n"
)


def test_a_run_with_a_10_mib_log_opens_quickly_and_stays_responsive(
    page: Page, client: httpx.Client, shoot: Shoot
) -> None:
    created = create_task(client, BIG, timeout_seconds=120)
    run = wait_run(client, created["task_id"], created["run_id"], timeout=120)
    assert run["status"] == "succeeded" and run["log_bytes"] > 9.5 * 1024 * 1024
    assert not run["log_truncated"] and run["log_lines"] == 115_000

    started = time.perf_counter()
    page.goto(f"/tasks/{created['task_id']}/runs/{run['run_id']}")
    lines = page.locator("#log .line")
    expect(lines.last).to_contain_text(f"{run['log_lines']:07d}")
    opened = time.perf_counter() - started
    assert lines.count() == 10_000, "the page shows the tail, not the whole log"
    note = page.locator(".log-note")
    expect(note).to_contain_text(f"{run['log_lines'] - 10_000} earlier lines not shown")
    expect(note.get_by_role("link", name="download the full log")).to_be_visible()
    assert opened < 15, f"the page took {opened:.1f} s"

    # Responsive: a scroll to the top and a script on the page answer at once.
    answered = page.evaluate(
        """() => { const t = performance.now();
                   document.getElementById('log').scrollTop = 0;
                   document.getElementById('log').getBoundingClientRect();
                   return performance.now() - t; }"""
    )
    assert answered < 500, f"layout after a scroll took {answered:.0f} ms"
    shoot(page, "big-run")

    download = client.get(f"/tasks/{created['task_id']}/runs/{run['run_id']}/log.txt")
    assert len(download.content) == run["log_bytes"]
    assert download.text.splitlines()[0].startswith("0000001 ")


def test_a_page_following_a_flood_keeps_the_newest_lines_only(
    page: Page, client: httpx.Client
) -> None:
    created = create_task(client, "print('warm')\n")
    wait_run(client, created["task_id"], created["run_id"])
    flood = create_task(client, FLOOD, timeout_seconds=120)
    page.goto(f"/tasks/{flood['task_id']}")
    expect(page.locator("#log .line").last).to_contain_text("line 15000", timeout=60_000)
    assert page.locator("#log .line").count() <= 10_000
    expect(page.locator("#log-trimmed")).to_contain_text("Showing lines from")
    wait_run(client, flood["task_id"], flood["run_id"])
