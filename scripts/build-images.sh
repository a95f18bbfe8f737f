#!/usr/bin/env bash
# Build taskdash's two runtime images without any image registry:
#   taskdash/shell:bookworm   Debian bookworm minbase (debootstrap) + user runner (1000:1000)
#   taskdash/python:bookworm  the same + images/python.packages (python3, pip, ca-certificates)
# The rootfs comes from Debian's apt mirror and is imported with `docker import`.
# An image is rebuilt only when missing or when its taskdash.recipe label differs from the
# sha256 of the recipe (this script + images/*). Needs root (debootstrap, chroot).
#
# Environment: TASKDASH_DEBIAN_MIRROR (default http://deb.debian.org/debian),
#              TASKDASH_DEBIAN_SECURITY (default http://deb.debian.org/debian-security),
#              TASKDASH_IMAGE_CACHE (default /var/cache/taskdash-images).
# Options: --force (rebuild even when up to date).
set -euo pipefail

LOG_PREFIX=images
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

SUITE=bookworm
SHELL_IMAGE=taskdash/shell:$SUITE
PYTHON_IMAGE=taskdash/python:$SUITE
MIRROR=${TASKDASH_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY=${TASKDASH_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}
CACHE=${TASKDASH_IMAGE_CACHE:-/var/cache/taskdash-images}

FORCE=0
for arg in "$@"; do
    case $arg in
        --force) FORCE=1 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) die "unknown option: $arg" ;;
    esac
done

cd "$ROOT"
docker_answers || ensure_docker
RECIPE=$(sha256sum scripts/build-images.sh images/* | sha256sum | cut -c1-16)

image_recipe() {  # prints the image's taskdash.recipe label, empty when the image is missing
    docker image inspect --format '{{ index .Config.Labels "taskdash.recipe" }}' "$1" 2>/dev/null || true
}

check_images() {  # fills need=() with the images to build; QUIET=1 prints nothing
    local image have
    need=()
    for image in "$SHELL_IMAGE" "$PYTHON_IMAGE"; do
        have=$(image_recipe "$image")
        if [ "$FORCE" -eq 1 ]; then
            need+=("$image"); msg="$image: rebuilding (--force)"
        elif [ -z "$have" ]; then
            need+=("$image"); msg="$image: missing, building (recipe $RECIPE)"
        elif [ "$have" != "$RECIPE" ]; then
            need+=("$image"); msg="$image: recipe changed ($have -> $RECIPE), rebuilding"
        else
            msg="$image: up to date (recipe $RECIPE)"
        fi
        [ "${QUIET:-0}" = 1 ] || say "$msg"
    done
}
check_images
[ "${#need[@]}" -eq 0 ] && exit 0
needs() { local i; for i in "${need[@]}"; do [ "$i" = "$1" ] && return 0; done; return 1; }

is_root || die "building images needs root (debootstrap + chroot); run: sudo $0"
command -v debootstrap >/dev/null 2>&1 || apt_install "needed to build the images" debootstrap

with_lock "$CACHE/.lock"
if [ "$FORCE" -eq 0 ]; then  # another build may have finished while we waited for the lock
    QUIET=1 check_images
    if [ "${#need[@]}" -eq 0 ]; then say "built meanwhile by another build-images.sh"; exit 0; fi
fi
DEBS=$CACHE/debs          # kept: .debs downloaded by debootstrap
ARCHIVES=$CACHE/apt-archives  # kept: .debs downloaded by apt-get in the rootfs (bind-mounted)
WORK=$CACHE/work          # removed after each build
ROOTFS=$WORK/rootfs

mounts_under_rootfs() {
    awk -v r="$ROOTFS" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r
}
cleanup() {
    local m
    # Unmount anything still mounted under the rootfs (proc, the bind-mounted .deb cache),
    # deepest first, and never remove the work dir while something is still mounted there.
    for m in $(mounts_under_rootfs); do umount -l "$m" 2>/dev/null || true; done
    if [ -n "$(mounts_under_rootfs)" ]; then
        printf '%s: ERROR: still mounted under %s, not removing it\n' "$LOG_PREFIX" "$ROOTFS" >&2
        return 1
    fi
    rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT
trap "exit 130" INT
trap "exit 143" TERM
cleanup
mkdir -p "$DEBS" "$ARCHIVES/partial" "$ROOTFS"

BUILD_LOG=$WORK/build.log
# in_root CMD...: run CMD in the rootfs, its output to $BUILD_LOG (shown when it fails).
in_root() {
    if ! chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
            DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@" </dev/null >>"$BUILD_LOG" 2>&1; then
        tail -n 30 "$BUILD_LOG" >&2
        die "failed in the rootfs: $*"
    fi
}

# Files that must not end up in an image (apt indexes, caches, build logs).
TAR_EXCLUDES=(
    --exclude=./proc/* --exclude=./sys/* --exclude=./dev/* --exclude=./run/*
    --exclude=./tmp/* --exclude=./var/tmp/*
    --exclude=./var/lib/apt/lists/* --exclude=./var/cache/apt/*
    --exclude=./var/cache/debconf/*-old --exclude=./var/cache/ldconfig/aux-cache
    --exclude=./var/log/* --exclude=./root/.bash_history
    --exclude=./etc/resolv.conf --exclude=./usr/sbin/policy-rc.d
)

import_rootfs() {  # import_rootfs IMAGE CHANGE...
    local image=$1; shift
    local changes=(
        --change "USER 1000:1000"
        --change "WORKDIR /tmp"
        --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        --change "ENV LANG=C.UTF-8"
        --change "ENV HOME=/tmp"
        --change "LABEL taskdash.recipe=$RECIPE"
        --change "LABEL taskdash.suite=$SUITE"
    )
    local c; for c in "$@"; do changes+=(--change "$c"); done
    local old; old=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
    tar --numeric-owner --xattrs -C "$ROOTFS" "${TAR_EXCLUDES[@]}" -cf - . \
        | docker import "${changes[@]}" --message "taskdash build-images.sh recipe $RECIPE" - "$image" >/dev/null
    # Drop the image this one replaces; docker refuses while something still uses it. Fine.
    if [ -n "$old" ]; then docker rmi "$old" >/dev/null 2>&1 || true; fi
}

t_all=$(now)

# 1. Base rootfs: debootstrap minbase. The .debs are cached in $DEBS, and the pristine
#    debootstrap result is kept as a tarball for a week: debootstrap spends ~25 s resolving,
#    unpacking and configuring, extracting the tarball takes ~2 s. Security and point updates
#    are applied on top at every build anyway (step 2).
t=$(now)
base_key=$(printf '%s\n' "$SUITE" minbase "$MIRROR" "$(debootstrap --version)" | sha256sum | cut -c1-16)
BASE_TAR=$CACHE/base-$SUITE-minbase-$base_key.tar
if [ -n "$(find "$BASE_TAR" -maxdepth 0 -mtime -7 2>/dev/null)" ]; then
    say "reusing the debootstrap rootfs $BASE_TAR (less than a week old)"
    tar --numeric-owner --xattrs -C "$ROOTFS" -xpf "$BASE_TAR"
    say "rootfs extracted in $(elapsed "$t")"
else
    say "debootstrap --variant=minbase $SUITE from $MIRROR (cache: $DEBS)"
    if ! debootstrap --variant=minbase --cache-dir="$DEBS" "$SUITE" "$ROOTFS" "$MIRROR" \
            >"$WORK/debootstrap.log" 2>&1; then
        tail -n 30 "$WORK/debootstrap.log" >&2
        tail -n 30 "$ROOTFS/debootstrap/debootstrap.log" >&2 2>/dev/null || true
        die "debootstrap failed"
    fi
    rm -f "$CACHE"/base-"$SUITE"-minbase-*.tar
    tar --numeric-owner --xattrs -C "$ROOTFS" --exclude=./var/cache/apt/archives/*.deb \
        -cf "$BASE_TAR.tmp" . && mv "$BASE_TAR.tmp" "$BASE_TAR"
    say "debootstrap done in $(elapsed "$t")"
fi

# 2. Base setup shared by both images: apt sources with security updates, upgrades, user, dirs.
t=$(now)
mount -t proc proc "$ROOTFS/proc"
mount --bind "$ARCHIVES" "$ROOTFS/var/cache/apt/archives"
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' >"$ROOTFS/usr/sbin/policy-rc.d"   # no services in a chroot
chmod 755 "$ROOTFS/usr/sbin/policy-rc.d"
cat >"$ROOTFS/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY $SUITE-security main
SOURCES
cat >"$ROOTFS/etc/apt/apt.conf.d/90taskdash" <<'APTCONF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
APTCONF
# Like Debian's slim images: no docs (copyright files kept), man pages or translations,
# for what is installed now and later. Saves about 45 MB per image.
cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/90taskdash-slim" <<'DPKGCONF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
DPKGCONF
find "$ROOTFS/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$ROOTFS/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/usr/share/lintian/*
find "$ROOTFS/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
say "apt-get update + upgrade (security and point updates) in the rootfs"
in_root apt-get update
in_root apt-get -y -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-unsafe-io dist-upgrade
in_root groupadd --gid 1000 runner
in_root useradd --uid 1000 --gid 1000 --create-home --home-dir /home/runner --shell /bin/bash runner
install -d -o 1000 -g 1000 -m 0755 "$ROOTFS/job"
install -d -o 1000 -g 1000 -m 0755 "$ROOTFS/deps"
say "base setup done in $(elapsed "$t")"

# 3. Shell image.
if needs "$SHELL_IMAGE"; then
    t=$(now)
    import_rootfs "$SHELL_IMAGE" 'CMD ["/bin/bash"]'
    say "$SHELL_IMAGE imported in $(elapsed "$t")"
fi

# 4. Python image: the same rootfs plus images/python.packages.
if needs "$PYTHON_IMAGE"; then
    t=$(now)
    mapfile -t pkgs < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' images/python.packages)
    say "apt-get install ${pkgs[*]} in the rootfs"
    in_root apt-get install -y -o Dpkg::Options::=--force-unsafe-io "${pkgs[@]}"
    import_rootfs "$PYTHON_IMAGE" 'ENV PYTHONUNBUFFERED=1' 'ENV PYTHONDONTWRITEBYTECODE=1' \
        'CMD ["python3"]'
    say "$PYTHON_IMAGE built in $(elapsed "$t")"
fi
in_root apt-get autoclean   # drop cached .debs that the mirror no longer has
umount "$ROOTFS/var/cache/apt/archives" "$ROOTFS/proc"

# 5. Verify what was built, the way the app runs it: no network, read-only root, uid 1000.
t=$(now)
check=(docker run --rm --network none --read-only --user 1000:1000)
# shellcheck disable=SC2016  # expanded in the container
out=$("${check[@]}" "$SHELL_IMAGE" bash -c 'set -e; [ "$(id -un)" = runner ]
    [ "$(stat -c %u:%g:%a /job /deps)" = "1000:1000:755
1000:1000:755" ]; [ -z "$(ls -A /deps)" ]; echo "$(id) $(bash --version | head -n1)"') \
    || die "$SHELL_IMAGE failed its check"
say "check $SHELL_IMAGE: $out"
out=$("${check[@]}" "$PYTHON_IMAGE" python3 -c 'import sys; print(sys.version.split()[0])') \
    || die "$PYTHON_IMAGE: python3 failed"
say "check $PYTHON_IMAGE: python $out"
out=$("${check[@]}" "$PYTHON_IMAGE" python3 -m pip --version) || die "$PYTHON_IMAGE: pip failed"
say "check $PYTHON_IMAGE: $out"
say "checks done in $(elapsed "$t")"

# Remove earlier builds left untagged because a container still used them when they were
# replaced (only images this script imported; docker refuses those still in use).
stale=()
for id in $(docker images -q --no-trunc -f dangling=true -f label=taskdash.recipe); do
    case $(docker image inspect --format '{{.Comment}}' "$id" 2>/dev/null) in
        "taskdash build-images.sh"*) stale+=("$id") ;;
    esac
done
if [ "${#stale[@]}" -gt 0 ]; then
    removed=$( (docker rmi "${stale[@]}" 2>/dev/null || true) | grep -c '^Deleted: ' || true)
    say "removed ${#stale[@]} superseded untagged image(s) ($removed layers deleted)"
fi

for image in "$SHELL_IMAGE" "$PYTHON_IMAGE"; do
    say "image $image $(docker image inspect --format '{{.Size}}' "$image" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
done
say "done in $(elapsed "$t_all")"
