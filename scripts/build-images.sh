#!/usr/bin/env bash
# Builds the tiny test images from busybox-static and pushes them to the local registry.
#
# Images (all FROM scratch + /bin/busybox, so no network and no base image are needed):
#   localhost:5000/hello:v1, :v2  HTTP on :8080; GET / answers "hello <version> from <hostname>".
#                                 PID 1 is a shell that traps SIGTERM and stops httpd, because
#                                 busybox httpd as PID 1 would ignore SIGTERM and every graceful
#                                 stop would wait for the SIGKILL.
#   localhost:5000/crash:v1       prints a line, exits 1 after about 1 s (crash-loop tests).
# Every image has the busybox applets on PATH (/bin), so tests can `podman exec` wget, nc, ...
#
# Idempotent and fast: an image whose tag the registry already lists is not rebuilt;
# pass --force to rebuild and push everything. Needs the registry from setup-host.sh.
set -euo pipefail

REGISTRY=${RECONCILER_REGISTRY:-localhost:5000}
REGISTRY_URL=${RECONCILER_REGISTRY_URL:-http://127.0.0.1:5000}
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

log() { printf 'build-images: %s\n' "$*" >&2; }
die() { printf 'build-images: error: %s\n' "$*" >&2; exit 1; }

curl -fsS -m 5 -o /dev/null "$REGISTRY_URL/v2/" ||
    die "no registry answers at $REGISTRY_URL; run scripts/setup-host.sh first."
BUSYBOX=$(command -v busybox || true)
[ -n "$BUSYBOX" ] || BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || die "busybox is not installed (apt-get install busybox-static)."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

in_registry() {
    # $1 name, $2 tag: true when the registry lists the tag.
    curl -fsS -m 5 "$REGISTRY_URL/v2/$1/tags/list" 2>/dev/null | grep -q "\"$2\""
}

make_rootfs() {
    # $1: context dir. A rootfs with /bin/busybox and a symlink per applet.
    mkdir -p "$1/rootfs/bin" "$1/rootfs/www" "$1/rootfs/tmp"
    cp "$BUSYBOX" "$1/rootfs/bin/busybox"
    # Relative links: they resolve inside the image whatever path busybox had on the host.
    for applet in $("$BUSYBOX" --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$1/rootfs/bin/$applet"
    done
}

build_and_push() {
    # $1 name, $2 tag, $3 entrypoint script text
    local name=$1 tag=$2 script=$3 ctx="$work/$1-$2" ref="$REGISTRY/$1:$2"
    if [ $FORCE = 0 ] && in_registry "$name" "$tag"; then
        log "$ref already in the registry"
        return
    fi
    make_rootfs "$ctx"
    printf '%s' "$script" >"$ctx/rootfs/entrypoint.sh"
    chmod 0755 "$ctx/rootfs/entrypoint.sh"
    cat >"$ctx/Containerfile" <<EOF
FROM scratch
COPY rootfs/ /
ENV PATH=/bin
LABEL io.reconciler.test-image="$name:$tag"
EXPOSE 8080
ENTRYPOINT ["/entrypoint.sh"]
EOF
    log "building $ref"
    podman build -q -t "$ref" "$ctx" >/dev/null
    podman push -q --tls-verify=false "$ref"
    in_registry "$name" "$tag" || die "pushed $ref but the registry does not list it."
    log "pushed $ref"
}

hello_script() {
    cat <<EOF
#!/bin/sh
# PID 1: serve the page, and stop promptly on SIGTERM (httpd as PID 1 would ignore it).
echo "hello $1 from \$(hostname)" >/www/index.html
httpd -f -p "\${PORT:-8080}" -h /www &
pid=\$!
trap 'kill -TERM \$pid 2>/dev/null; wait \$pid; exit 0' TERM INT
echo "hello $1 listening on :\${PORT:-8080}"
wait \$pid
EOF
}

crash_script() {
    cat <<'EOF'
#!/bin/sh
echo "crash: starting, will exit 1 in 1 s"
sleep 1
echo "crash: exiting 1"
exit 1
EOF
}

build_and_push hello v1 "$(hello_script v1)"
build_and_push hello v2 "$(hello_script v2)"
build_and_push crash v1 "$(crash_script)"
log "done"
