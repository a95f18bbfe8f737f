#!/usr/bin/env bash
# Lint, type-check and test taskdash, after `scripts/setup.sh --test`.
#   scripts/test.sh          setup + lint + mypy + pytest twice: on SQLite, then on PostgreSQL
#                            (a throwaway cluster, scripts/postgres.sh); what `make test` and
#                            CI run
#   scripts/test.sh lint     setup + lint + mypy only
# Extra arguments after `--` go to pytest (both passes), e.g. scripts/test.sh -- -k cron -x.
# TASKDASH_TEST_DATABASES picks the passes (default "sqlite postgres"); CI runs both.
set -euo pipefail

LOG_PREFIX="test"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

what=all
if [ "${1:-}" = lint ]; then what=lint; shift; fi
if [ "${1:-}" = -- ]; then shift; fi
cd "$ROOT"
passes=${TASKDASH_TEST_DATABASES:-sqlite postgres}
if [ "${CI:-}" = true ] && [ "$passes" != "sqlite postgres" ]; then
    die "CI=true runs both passes: unset TASKDASH_TEST_DATABASES (it is \"$passes\")"
fi
for pass in $passes; do
    case $pass in sqlite|postgres) ;; *) die "TASKDASH_TEST_DATABASES: unknown pass $pass" ;; esac
done

"$ROOT/scripts/setup.sh" --test

PATHS=(taskdash tests bench app.py)
# Every step runs even when an earlier one fails, so one CI run shows all problems.
failed=()
step() {
    local name=$1; shift
    say "$*"
    local rc=0
    "$@" || rc=$?
    if [[ $name == pytest* ]] && [ "$rc" -eq 5 ]; then
        say "pytest collected no tests (exit 5): that counts as a failure"
    fi
    if [ "$rc" -ne 0 ]; then failed+=("$name (exit $rc)"); fi
}
step "ruff check" .venv/bin/ruff check "${PATHS[@]}"
step "ruff format" .venv/bin/ruff format --check "${PATHS[@]}"
step mypy .venv/bin/mypy

# pytest_pass sqlite|postgres [VAR=value...]: the whole suite on one database, timed.
pytest_pass() {
    local database=$1 t; shift
    t=$(now)
    step "pytest on $database" env TASKDASH_TEST_DATABASE="$database" "$@" \
        .venv/bin/python -m pytest -q "${pytest_args[@]}"
    say "pytest on $database took $(elapsed "$t")"
}
pytest_args=("$@")
pg_dir=""
stop_postgres() {
    if [ -n "$pg_dir" ]; then
        "$ROOT/scripts/postgres.sh" stop "$pg_dir" || true
        rm -rf "$pg_dir"
    fi
}
trap stop_postgres EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if [ "$what" = all ]; then
    for pass in $passes; do
        if [ "$pass" = sqlite ]; then
            pytest_pass sqlite
        else
            # A cluster of this run's own, in a folder the postgres user can reach.
            pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/taskdash-pg.XXXXXX")
            if url=$("$ROOT/scripts/postgres.sh" start "$pg_dir"); then
                pytest_pass postgres TASKDASH_TEST_POSTGRES_URL="$url"
            else
                failed+=("the PostgreSQL cluster did not start (its log is above)")
            fi
        fi
    done
fi

if [ "${#failed[@]}" -gt 0 ]; then
    printf -v summary '%s, ' "${failed[@]}"
    die "failed: ${summary%, }"
fi
say "all passed"
