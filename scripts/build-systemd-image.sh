#!/usr/bin/env bash
# Builds, once, the Debian bookworm image in which tests/test_systemd_unit.py boots a real systemd
# and runs the project's unit. Prints the image to use on stdout (everything else goes to stderr).
#
# Two cached layers, because the first takes minutes and the second changes with pyproject.toml:
#   localhost/reconciler-systemd:bookworm       debootstrap'd minbase + systemd, python3, git, procps.
#                                               The rootfs tarball is kept in the cache dir, so a
#                                               wiped podman storage re-imports it in seconds.
#   localhost/reconciler-systemd:deps-<hash>    + /opt/reconciler/venv with the project's
#                                               dependencies, installed from wheels built on the
#                                               host (the container needs no network).
# The project itself is not baked in: the test builds the current tree's wheel (offline, with
# the build requirements kept in $CACHE/build-wheels) and installs it into the running
# container, so editing the code never invalidates the cache.
#
# The Debian mirror is the one apt is configured with here (/etc/apt/sources.list*); if it
# cannot be reached the script fails loudly: a skipped systemd test would hide a broken unit.
#
# Environment knobs: RECONCILER_SYSTEMD_CACHE (default /var/cache/reconciler-systemd-image).
set -euo pipefail

cd "$(dirname "$0")/.."
CACHE=${RECONCILER_SYSTEMD_CACHE:-/var/cache/reconciler-systemd-image}
BASE_IMAGE=localhost/reconciler-systemd:bookworm
# procps: /bin/kill, which the unit's ExecReload runs (every real Debian system has it);
# nftables, iproute2: the Service data plane (nft) and the hairpin and route settings (ip).
PACKAGES=systemd,systemd-sysv,python3,python3-venv,git,python3-pip,procps,nftables,iproute2
# The package list is part of the cache key: changing it rebuilds the base layer.
ROOTFS_TAR=$CACHE/rootfs-$(printf '%s' "$PACKAGES" | sha256sum | cut -c1-12).tar

log() { printf 'build-systemd-image: %s\n' "$*" >&2; }
die() { printf 'build-systemd-image: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run me as root (debootstrap and podman import need it)."
command -v podman >/dev/null || die "podman is not installed (scripts/setup-host.sh installs it)."
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9  # two test sessions must not debootstrap into the same dir

debian_mirror() {
    # The first URI apt uses for a plain bookworm suite (not -security/-updates), in either
    # the one-line or the deb822 format.
    python3 -c '
import glob, re
files = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*"))
for path in files:
    try:
        text = open(path, encoding="utf-8").read()
    except OSError:
        continue
    if path.endswith(".sources"):
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
            if "bookworm" in fields.get("Suites", "").split() and fields.get("Types", "deb").split()[0] == "deb":
                print(fields["URIs"].split()[0]); raise SystemExit
    else:
        for line in text.splitlines():
            m = re.match(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s", line)
            if m:
                print(m.group(1)); raise SystemExit
'
}

build_rootfs_tarball() {
    command -v debootstrap >/dev/null || {
        log "installing debootstrap"
        # A fresh machine may have no package lists yet: update only when the install needs it.
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2 ||
            { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2; } ||
            die "cannot install debootstrap (apt-get install debootstrap failed)."
    }
    local mirror
    mirror=$(debian_mirror)
    [ -n "$mirror" ] || die "no bookworm mirror in /etc/apt/sources.list*; cannot debootstrap."
    local dir="$CACHE/rootfs.tmp"
    rm -rf "$dir"
    log "debootstrap bookworm from $mirror into $dir (a few minutes, once)"
    if ! debootstrap --variant=minbase --include="$PACKAGES" bookworm "$dir" "$mirror" \
            >"$CACHE/debootstrap.log" 2>&1; then
        tail -20 "$CACHE/debootstrap.log" >&2
        die "debootstrap from $mirror failed (log: $CACHE/debootstrap.log); is the Debian mirror reachable?"
    fi
    # A container-friendly boot: no gettys or udev-driven units waiting for hardware, an empty
    # machine-id (systemd fills it at boot), and the journal kept in memory.
    : >"$dir/etc/machine-id"
    for unit in getty.target console-getty.service systemd-udevd.service systemd-udev-trigger.service \
                systemd-remount-fs.service sys-kernel-debug.mount sys-kernel-tracing.mount; do
        ln -sf /dev/null "$dir/etc/systemd/system/$unit"
    done
    mkdir -p "$dir/etc/systemd/journald.conf.d"
    printf '[Journal]\nStorage=volatile\n' >"$dir/etc/systemd/journald.conf.d/10-container.conf"
    rm -rf "$dir/var/cache/apt/archives/"*.deb "$dir/var/lib/apt/lists/"*
    tar -C "$dir" -cf "$ROOTFS_TAR.tmp" .
    mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
    rm -rf "$dir"
}

# --- layer 1: the base image -----------------------------------------------------------------
base_packages() {
    podman image inspect --format '{{index .Labels "reconciler.packages"}}' "$BASE_IMAGE" 2>/dev/null || true
}
if [ "$(base_packages)" != "$PACKAGES" ]; then
    [ -f "$ROOTFS_TAR" ] || build_rootfs_tarball
    log "importing $ROOTFS_TAR as $BASE_IMAGE"
    podman import --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL=SIGRTMIN+3' \
        --change "LABEL reconciler.packages=$PACKAGES" "$ROOTFS_TAR" "$BASE_IMAGE" >/dev/null
fi
base_id=$(podman image inspect --format '{{.Id}}' "$BASE_IMAGE")

# --- build requirements for the project's own wheel (the test builds it offline) -------------
if [ ! -f "$CACHE/build-wheels/.done" ]; then
    log "downloading the build requirements into $CACHE/build-wheels"
    rm -rf "$CACHE/build-wheels"
    python3 -m pip download -q "setuptools>=64" wheel -d "$CACHE/build-wheels" >&2 ||
        die "pip download of setuptools and wheel failed."
    touch "$CACHE/build-wheels/.done"
fi

# --- layer 2: the dependencies in a venv -------------------------------------------------------
requirements=$(python3 -c 'import tomllib; print(" ".join(sorted(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"])))')
deps_hash=$(printf '%s %s' "$requirements" "$base_id" | sha256sum | cut -c1-12)
DEPS_IMAGE=localhost/reconciler-systemd:deps-$deps_hash
if ! podman image exists "$DEPS_IMAGE"; then
    wheels="$CACHE/wheels-$deps_hash"
    if [ ! -f "$wheels/.done" ]; then
        log "building the dependencies' wheels into $wheels"
        rm -rf "$wheels"
        # shellcheck disable=SC2086  # one requirement per word
        python3 -m pip wheel -q $requirements -w "$wheels" >&2 || die "pip wheel failed for the project's dependencies."
        touch "$wheels/.done"
    fi
    log "installing the dependencies into $DEPS_IMAGE"
    ctr=reconciler-systemd-deps-$$
    podman rm -f "$ctr" >/dev/null 2>&1 || true
    # shellcheck disable=SC2086
    podman run --name "$ctr" --network=none -v "$wheels:/wheels:ro" "$BASE_IMAGE" \
        sh -c "python3 -m venv /opt/reconciler/venv &&
               /opt/reconciler/venv/bin/pip install -q --no-index --find-links /wheels $(printf "'%s' " $requirements)" >&2 ||
        { podman rm -f "$ctr" >/dev/null 2>&1; die "installing the dependencies in the image failed."; }
    podman commit -q --change 'CMD ["/sbin/init"]' "$ctr" "$DEPS_IMAGE" >/dev/null
    podman rm -f "$ctr" >/dev/null
fi
log "image ready: $DEPS_IMAGE"
echo "$DEPS_IMAGE"
