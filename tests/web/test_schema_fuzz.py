"""Schemathesis against /openapi.json on a real server, with an operator token.

Every documented operation gets generated requests (its examples, the coverage phase's edge
cases and random ones, bounded); the API's must answer as the document says (status, content
type, body, headers, auth), the dashboard's must never fail (HTML pages, so only "no 5xx"
applies). Half the valid requests about a task name one of three real tasks, so the answers
about tasks, runs, logs and schedules are checked, not only the 404s. No stateful part: its
workflows would find real ids by themselves, but Hypothesis needs a server whose answers do not
change between its runs, and here tasks come and go (FlakyStrategyDefinition).

The run-creating routes are fuzzed too, on a server that keeps the engine calm: one run at a
time, runs of at most 2 s, at most RUNS_PER_MINUTE runs (the rest answers the documented 429),
and no image but the two defaults (no pull of a generated name).

The document is built at import (schemathesis parametrizes at collection, before a server
exists; its fixture-based loader does not work with pytest 9.2), and the first test checks
that the server serves exactly that document.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    unsupported_method,
)

from taskdash import create_app
from taskdash.core.config import load_settings
from tests.conftest import remove_containers
from tests.support import LiveServer, add_token, bearer, create_task

Case = schemathesis.Case[Any]
RUNS_PER_MINUTE = 12
FUZZ_SERVER = {
    "TASKDASH_MAX_CONCURRENT_RUNS": "1",
    "TASKDASH_RUN_TIMEOUT_SECONDS": "2",
    "TASKDASH_MAX_RUN_TIMEOUT_SECONDS": "2",
    "TASKDASH_RUN_RATE_PER_MINUTE": str(RUNS_PER_MINUTE),
    "TASKDASH_ALLOWED_IMAGES": "taskdash/python:bookworm,taskdash/shell:bookworm",
    "TASKDASH_BUILD_NETWORK": "none",
    "TASKDASH_PIP_NO_INDEX": "true",
}
# Streams stay open while a run lives (and /ui/events for ever): tests/web/test_streams.py.
STREAMS = r"/stream$|^/ui/events$"
# Fields with a grammar (cron, zones, env lines, image names, limits below the documented
# maxima) are documented as strings and numbers: the documented 400 names the field.
NOT_CHECKED: list[CheckFunction] = [positive_data_acceptance]
# Schemathesis spells a non-boolean as 0 or 1 in a form field (it avoids that in the query and
# the path only), and the form reads those as booleans, as it reads yes/no and on/off.
FORM_BODIES = {"/task/py", "/task/sh"}
# PUT /task/py is PUT /task/<task_id> with the id "py" (the original spec's paths overlap):
# it answers 400 malformed_id, and OPTIONS lists the methods of both rules.
OVERLAPPING = {"/task/py", "/task/sh"}
# Deleting a seeded task would leave the other operations with 404s again.
DELETING_TASK = ("DELETE", "/task/{task_id}")
FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
# Real tasks the fixture made (about_a_real_task), so the answers about a task, its runs, logs
# and schedule are checked too, not only 404s.
SEEDED_TASKS: list[str] = []


def built_document() -> dict[str, Any]:
    """/openapi.json as the app serves it, from an app that is not serving."""
    with tempfile.TemporaryDirectory() as folder:
        app = create_app(load_settings(data_dir=folder, secret_key="fuzz " * 8))
        document: dict[str, Any] = app.extensions["QUART_SCHEMA"].openapi_provider.schema()
    parsed: dict[str, Any] = json.loads(json.dumps(document, default=str))
    return parsed


DOCUMENT = built_document()
schema = schemathesis.openapi.from_dict(DOCUMENT)


def about_a_real_task(case: Case) -> None:
    """Half the valid requests about a task name a seeded one instead of a random UUID (chosen
    by the generated id, so a run is reproducible). Workflows through the document's links
    would find real ids themselves, but Hypothesis needs answers that do not change between its
    runs, and tasks come and go on this server."""
    parameters = case.path_parameters or {}
    if case.meta is None or not case.meta.generation.mode.is_positive or not SEEDED_TASKS:
        return
    if "task_id" not in parameters or (case.method.upper(), case.operation.path) == DELETING_TASK:
        return
    try:
        number = UUID(str(parameters["task_id"])).int
    except ValueError:
        return
    if number % 2:
        case.path_parameters = parameters | {"task_id": SEEDED_TASKS[number % len(SEEDED_TASKS)]}


@dataclass(frozen=True)
class Fuzzed:
    server: LiveServer
    token: str

    def call(self, case: Case, **options: Any) -> None:
        case.call_and_validate(
            base_url=self.server.base_url,
            headers=bearer(self.token),
            timeout=30,
            allow_redirects=False,
            **options,
        )


@pytest.fixture(scope="module")
def fuzzed(docker_engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    token = add_token(data_dir, "fuzz", "operator")
    server = LiveServer(data_dir, env=FUZZ_SERVER).start()
    with httpx.Client(base_url=server.base_url, headers=bearer(token), timeout=30) as http:
        for kind, script in (("py", "print('seed')\n"), ("sh", "echo seed\n"), ("sh", "sleep 1\n")):
            SEEDED_TASKS.append(create_task(http, script, kind=kind)["task_id"])
    yield Fuzzed(server, token)
    SEEDED_TASKS.clear()
    server.stop()
    remove_containers(server)


def test_the_fuzzed_document_is_the_served_one(fuzzed: Fuzzed) -> None:
    served = httpx.get(
        f"{fuzzed.server.base_url}/openapi.json", headers=bearer(fuzzed.token), timeout=30
    )
    assert served.status_code == 200
    assert served.json() == DOCUMENT


def excluded_checks(case: Case) -> list[CheckFunction]:
    excluded = list(NOT_CHECKED)
    if case.path in FORM_BODIES:
        excluded.append(negative_data_rejection)
    if case.path in OVERLAPPING:
        excluded += [unsupported_method, allow_header_conformance]
    return excluded


@schema.include(tag="api").exclude(path_regex=STREAMS).parametrize()
@FUZZ
def test_the_api_answers_as_documented(case: Case, fuzzed: Fuzzed) -> None:
    about_a_real_task(case)
    fuzzed.call(case, excluded_checks=excluded_checks(case))


@schema.include(tag="dashboard").exclude(path_regex=STREAMS).parametrize()
@FUZZ
def test_no_dashboard_route_fails(case: Case, fuzzed: Fuzzed) -> None:
    # HTML pages and redirects to the login page: nothing to hold them to but "no 5xx".
    fuzzed.call(case, checks=[not_a_server_error])


def test_the_fuzzed_server_logged_no_traceback(fuzzed: Fuzzed) -> None:
    """What no response shows: an exception in a run's job or a stream after its answer."""
    log = fuzzed.server.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[max(0, log.find("Traceback") - 500) :][:4000]
