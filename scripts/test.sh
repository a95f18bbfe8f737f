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
run() { say "$*"; "$@"; }
run .venv/bin/ruff check "${PATHS[@]}"
run .venv/bin/ruff format --check "${PATHS[@]}"
run .venv/bin/mypy taskdash
[ "$what" = lint ] && exit 0

say ".venv/bin/python -m pytest -q $*"
rc=0
.venv/bin/python -m pytest -q "$@" || rc=$?
if [ "$rc" -eq 5 ]; then
    die "pytest collected no tests (exit 5): that counts as a failure"
fi
exit "$rc"
