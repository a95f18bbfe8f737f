#!/usr/bin/env bash
# Lint, type-check and test taskdash, after `scripts/setup.sh --test`.
#   scripts/test.sh          setup + lint + mypy + pytest (what `make test` and CI run)
#   scripts/test.sh lint     setup + lint + mypy only
# Extra arguments after `--` go to pytest, e.g. scripts/test.sh -- -k cron -x
set -euo pipefail

LOG_PREFIX="test"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

what=all
if [ "${1:-}" = lint ]; then what=lint; shift; fi
if [ "${1:-}" = -- ]; then shift; fi
cd "$ROOT"

"$ROOT/scripts/setup.sh" --test

PATHS=(taskdash tests bench app.py)
# Every step runs even when an earlier one fails, so one CI run shows all problems.
failed=()
step() {
    local name=$1; shift
    say "$*"
    local rc=0
    "$@" || rc=$?
    if [ "$name" = pytest ] && [ "$rc" -eq 5 ]; then
        say "pytest collected no tests (exit 5): that counts as a failure"
    fi
    if [ "$rc" -ne 0 ]; then failed+=("$name (exit $rc)"); fi
}
step "ruff check" .venv/bin/ruff check "${PATHS[@]}"
step "ruff format" .venv/bin/ruff format --check "${PATHS[@]}"
step mypy .venv/bin/mypy
if [ "$what" = all ]; then
    step pytest .venv/bin/python -m pytest -q "$@"
fi

if [ "${#failed[@]}" -gt 0 ]; then
    printf -v summary '%s, ' "${failed[@]}"
    die "failed: ${summary%, }"
fi
say "all passed"
