#!/usr/bin/env bash
# Get a machine ready to run (or, with --test, to test) taskdash. Idempotent and quick when
# everything is already there:
#   1. a Docker engine that answers (installs docker.io and starts a detached dockerd if needed)
#   2. .venv with requirements.txt (--test: requirements-dev.txt), skipped when unchanged
#   3. the runtime images taskdash/{shell,python}:bookworm (scripts/build-images.sh)
#   4. --test: Debian's chromium for the browser tests, debootstrap, and Debian's postgresql
#      for the PostgreSQL pass (scripts/test.sh starts a throwaway cluster of its own)
# Installing packages or starting dockerd needs root; otherwise it says what is missing.
set -euo pipefail

LOG_PREFIX=setup
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

TEST=0
for arg in "$@"; do
    case $arg in
        --test) TEST=1 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) die "unknown option: $arg (expected --test)" ;;
    esac
done
cd "$ROOT"
t_all=$(now)

# 1. Docker engine.
ensure_docker

# 2. Python virtualenv.
VENV=$ROOT/.venv
with_lock "${TMPDIR:-/tmp}/taskdash-venv-$(printf %s "$ROOT" | sha256sum | cut -c1-12).lock"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c '' 2>/dev/null; then
    command -v python3 >/dev/null 2>&1 || apt_install "no python3" python3 python3-venv
    rm -rf "$VENV"
    say "creating .venv with $(python3 --version 2>&1)"
    if ! python3 -m venv "$VENV" 2>/dev/null; then
        rm -rf "$VENV"
        # Debian ships venv/ensurepip separately.
        apt_install "python3 -m venv failed" python3-venv
        python3 -m venv "$VENV" || die "python3 -m venv failed"
    fi
fi
if [ "$TEST" -eq 1 ]; then
    req_files=(requirements.txt requirements-dev.txt); stamp=$VENV/.taskdash-requirements-test
else
    req_files=(requirements.txt); stamp=$VENV/.taskdash-requirements
fi
# The stamp records what was installed: the requirement files and the interpreter.
want=$({ "$VENV/bin/python" -VV; cat "${req_files[@]}"; } | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    say ".venv is up to date with ${req_files[*]}"
else
    t=$(now)
    say "pip install -r ${req_files[-1]} into .venv"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off -q \
        -r "${req_files[-1]}" || die "pip install -r ${req_files[-1]} failed"
    echo "$want" >"$stamp"
    # requirements-dev.txt includes requirements.txt: the runtime set is installed too.
    if [ "$TEST" -eq 1 ]; then
        { "$VENV/bin/python" -VV; cat requirements.txt; } | sha256sum | cut -d' ' -f1 \
            >"$VENV/.taskdash-requirements"
    fi
    say "pip install done in $(elapsed "$t")"
fi

# 3. Runtime images.
"$ROOT/scripts/build-images.sh"

# 4. Tests: Debian's chromium for Playwright (never `playwright install`), debootstrap for
#    tests that exercise the offline image build, and PostgreSQL's server programs (initdb,
#    pg_ctl: Debian keeps them in /usr/lib/postgresql/N/bin) for the PostgreSQL pass.
if [ "$TEST" -eq 1 ]; then
    missing=()
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
    if ! postgres_bindir >/dev/null; then
        missing+=(postgresql)
        # The tests start their own cluster: the package need not make and start `main`.
        if is_root; then
            mkdir -p /etc/postgresql-common/createcluster.d
            echo "create_main_cluster = false" \
                >/etc/postgresql-common/createcluster.d/taskdash-tests.conf
        fi
    fi
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "needed by the tests" "${missing[@]}"
    fi
    say "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo 'installed')"
    bindir=$(postgres_bindir) || die "postgresql is installed but no initdb/pg_ctl was found"
    say "postgresql: $("$bindir/postgres" --version 2>/dev/null || echo 'installed') in $bindir"
fi

say "ready in $(elapsed "$t_all")"
