# Shared helpers for scripts/*.sh. Source it; do not run it.
# shellcheck shell=bash

# The prefix (setup:, images:, test:) is set by the caller before sourcing.
: "${LOG_PREFIX:=taskdash}"

say() { printf '%s: %s\n' "$LOG_PREFIX" "$*"; }
die() { printf '%s: ERROR: %s\n' "$LOG_PREFIX" "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# Seconds since the epoch with a fraction, for "took N.Ns" lines.
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

_APT_UPDATED=0
# apt_install WHY PKG...: install Debian packages, only as root where apt-get exists.
apt_install() {
    local why=$1; shift
    if ! is_root || ! command -v apt-get >/dev/null 2>&1; then
        die "$why: please install these packages: $* (needs root and apt-get to do it here)"
    fi
    if [ "$_APT_UPDATED" -eq 0 ]; then
        say "apt-get update"
        apt-get update -qq || die "apt-get update failed"
        _APT_UPDATED=1
    fi
    say "apt-get install $* ($why)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" </dev/null \
        || die "apt-get install $* failed"
}

# with_lock FILE: take an exclusive flock for the rest of the calling shell, so two
# setups running at once (a developer and `make test`) do not race. Waits if needed.
with_lock() {
    local file=$1 fd
    mkdir -p "$(dirname "$file")"
    exec {fd}>"$file"
    if ! flock -n "$fd"; then
        say "waiting for another run holding $file"
        flock "$fd"
    fi
}

docker_answers() { timeout 20 docker info >/dev/null 2>&1; }

# ensure_docker: make `docker info` answer, installing docker.io and starting a detached
# dockerd when needed (root only).
DOCKERD_LOG=/var/log/taskdash-dockerd.log
DOCKERD_PIDFILE=/var/run/docker.pid
ensure_docker() {
    if command -v docker >/dev/null 2>&1 && docker_answers; then
        say "docker engine is up ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
        return 0
    fi
    if ! is_root; then
        die "docker does not answer and I am not root: start the Docker engine (dockerd) yourself, or give this user access to /var/run/docker.sock"
    fi
    with_lock /run/taskdash-docker.lock
    if command -v docker >/dev/null 2>&1 && docker_answers; then
        say "docker engine is up (started meanwhile by another setup)"
        return 0
    fi
    if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
        apt_install "Docker engine missing" docker.io
        # On a systemd host the package starts the service itself.
        if docker_answers; then say "docker engine is up (started by the package)"; return 0; fi
    fi

    local pid=""
    if [ -s "$DOCKERD_PIDFILE" ]; then
        pid=$(cat "$DOCKERD_PIDFILE")
        if ! kill -0 "$pid" 2>/dev/null; then
            say "removing stale $DOCKERD_PIDFILE (process $pid is gone)"
            rm -f "$DOCKERD_PIDFILE"
            pid=""
        else
            say "dockerd (pid $pid) is running but does not answer yet; waiting for it"
        fi
    fi
    if [ -z "$pid" ]; then
        if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
            say "starting docker with systemctl"
            systemctl start docker || say "systemctl start docker failed; starting dockerd by hand"
        fi
    fi
    if [ -z "$pid" ] && ! docker_answers; then
        say "starting dockerd detached (log: $DOCKERD_LOG)"
        # Own session, no inherited stdin/stdout/stderr nor any other fd (lock files, make's
        # jobserver pipes), so nobody waits on it and it holds none of our locks.
        (
            for fd in "/proc/$BASHPID"/fd/*; do
                fd=${fd##*/}
                [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-"
            done
            exec setsid dockerd </dev/null >>"$DOCKERD_LOG" 2>&1
        ) &
        pid=$!
    fi
    local deadline=$((SECONDS + 60))
    until docker_answers; do
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null && [ ! -s "$DOCKERD_PIDFILE" ]; then
            tail -n 30 "$DOCKERD_LOG" >&2 || true
            die "dockerd exited; see $DOCKERD_LOG"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 30 "$DOCKERD_LOG" >&2 || true
            die "docker did not answer within 60s; see $DOCKERD_LOG"
        fi
        sleep 0.5
    done
    say "docker engine is up ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
}

# postgres_bindir: print the folder of the newest PostgreSQL server's programs (initdb, pg_ctl,
# pg_isready): Debian keeps them in /usr/lib/postgresql/N/bin, off the PATH. Fails when none.
postgres_bindir() {
    local dir
    for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k4,4nr); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/pg_isready" ]; then
            echo "$dir"
            return 0
        fi
    done
    dir=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
    if [ -x "$dir/pg_ctl" ] && [ -x "$dir/pg_isready" ]; then echo "$dir"; return 0; fi
    return 1
}
