#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests, in a folder of its own:
#   scripts/postgres.sh start DIR   initdb into DIR/data (when new), start it detached on the unix
#                                   socket in DIR/socket (no TCP), wait until it answers, print
#                                   its URL on stdout (the `postgres` database; the tests create
#                                   their own), what it did on stderr
#   scripts/postgres.sh stop DIR    stop it (fast shutdown); DIR is left for the caller to remove
# As root the cluster belongs to the `postgres` user (PostgreSQL refuses to run as root).
# Needs Debian's postgresql package (`scripts/setup.sh --test` installs it). Throwaway only:
# trust authentication on a socket only its owner (and root) can reach, fsync off.
set -euo pipefail

LOG_PREFIX=postgres
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

[ "$#" -eq 2 ] || die "usage: $0 start|stop DIR"
action=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)
data=$dir/data socket=$dir/socket log=$dir/postgres.log
bindir=$(postgres_bindir) || die "no PostgreSQL server (initdb, pg_ctl) found: run scripts/setup.sh --test"

# The cluster's owner: `postgres` when we are root, else ourselves.
OWNER=()
if is_root; then OWNER=(runuser -u postgres --); fi
as_owner() { "${OWNER[@]}" "$@"; }

answers() { "$bindir/pg_isready" -q -h "$socket" -p 5432 -t 2 </dev/null >/dev/null 2>&1; }

start() {
    if is_root; then
        id postgres >/dev/null 2>&1 || die "no postgres user (Debian's postgresql package makes it)"
        chown postgres: "$dir"
    fi
    chmod 0700 "$dir"
    as_owner test -w "$dir" || die "$dir is not writable by the cluster's owner"
    as_owner touch "$log"
    if answers; then
        say "already answering on $socket" >&2
    else
        if [ ! -s "$data/PG_VERSION" ]; then
            local t; t=$(now)
            as_owner mkdir -p "$data" "$socket"
            as_owner "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 \
                --locale=C.UTF-8 --no-instructions </dev/null >>"$log" 2>&1 \
                || { tail -n 20 "$log" >&2; die "initdb failed; see $log"; }
            say "initdb $data in $(elapsed "$t")" >&2
        fi
        # pg_ctl -W returns at once; the postmaster it forks runs in a session of its own, with
        # none of our descriptors (lock files, make's jobserver pipes) and its output in the
        # log: nobody waits on it.
        (
            for fd in "/proc/$BASHPID"/fd/*; do
                fd=${fd##*/}
                [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-"
            done
            exec setsid "${OWNER[@]}" "$bindir/pg_ctl" start -W \
                -D "$data" -l "$log" -o "-c listen_addresses='' -c unix_socket_directories='$socket' \
                -c port=5432 -c max_connections=300 -c fsync=off -c synchronous_commit=off \
                -c full_page_writes=off"
        ) </dev/null >>"$log" 2>&1
        local deadline=$((SECONDS + 60)) logged
        logged=$(wc -l <"$log")
        until answers; do
            if tail -n "+$((logged + 1))" "$log" | grep -q '^.*FATAL:'; then
                tail -n 30 "$log" >&2 || true
                die "PostgreSQL did not start; see $log"
            fi
            if [ "$SECONDS" -ge "$deadline" ]; then
                tail -n 30 "$log" >&2 || true
                die "PostgreSQL did not answer within 60s; see $log"
            fi
            sleep 0.2
        done
        say "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') answers on $socket (log: $log)" >&2
    fi
    echo "postgres://postgres@/postgres?host=$socket"
}

stop() {
    if [ -s "$data/postmaster.pid" ]; then
        as_owner "$bindir/pg_ctl" stop -D "$data" -m fast -w -t 30 </dev/null >>"$log" 2>&1 \
            || die "pg_ctl stop failed; see $log"
        say "stopped the cluster in $dir"
    fi
}

case $action in
    start) start ;;
    stop) stop ;;
    *) die "unknown action: $action (expected start or stop)" ;;
esac
