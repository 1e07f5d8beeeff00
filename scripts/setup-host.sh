#!/usr/bin/env bash
# Host set-up for Reconciler on Debian 12: idempotent, safe to run again.
#
# What it does, and why:
#  1. installs the Debian packages Reconciler and its tests need, only those missing
#     (apt-get update is skipped when nothing is missing, so a re-run is fast and offline);
#  2. probes podman with a trivial container and applies host workarounds ONLY when the probe
#     shows they are needed (podman's default ulimits above the machine's hard limits; crun
#     failing on hybrid cgroups), in /etc/containers/containers.conf.d/50-reconciler.conf,
#     then re-probes to prove podman now reads them;
#  3. lets podman pull from the plain-HTTP local registry (localhost:5000, 127.0.0.1:5000);
#  4. starts Debian's docker-registry on 127.0.0.1:5000 unless something already answers
#     there (systemd may not be PID 1, so it is started in the background by hand).
#
# Environment knobs: RECONCILER_REGISTRY_DIR (default /var/lib/reconciler-registry).
set -euo pipefail

# netavark + aardvark-dns: without them podman 4.3 silently falls back to CNI (podman's Recommends,
# which --no-install-recommends skips). netavark 1.4 drives the firewall through iptables (nft backend).
# nftables: the node agent's Services data plane. iproute2: pod-network routes and the test hosts.
# etcd-server + etcd-client: the etcd store (issue 14) and the 3-member test cluster (tests/harness/etcd.py).
# zsh + fish: the tests parse `reconciler completion zsh|fish` with the shells themselves.
# chromium + chromium-driver: the dashboard's tests and scripts/screenshots.py drive a headless browser.
PACKAGES=(podman runc netavark aardvark-dns iptables nftables conntrack iproute2 docker-registry busybox-static git catatonit curl etcd-server etcd-client zsh fish chromium chromium-driver)
CONF_DIR=/etc/containers/containers.conf.d
CONF_FILE=$CONF_DIR/50-reconciler.conf
REGISTRIES_FILE=/etc/containers/registries.conf.d/50-reconciler-local-registry.conf
REGISTRY_DIR=${RECONCILER_REGISTRY_DIR:-/var/lib/reconciler-registry}
REGISTRY_ADDR=127.0.0.1:5000
PROBE_IMAGE=localhost/reconciler-probe:latest

log() { printf 'setup-host: %s\n' "$*" >&2; }
die() { printf 'setup-host: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run me as root (I install packages and write /etc/containers)."

# --- 1. packages --------------------------------------------------------------------------
missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing: ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    log "packages already installed"
fi

# --- 2. podman workarounds, only where the probe needs them ---------------------------------
probe_dir=$(mktemp -d)
trap 'rm -rf "$probe_dir"' EXIT

build_probe_image() {
    # FROM scratch + busybox: no registry or network needed, and no RUN step (which would
    # itself need a working runtime).
    cp /bin/busybox "$probe_dir/busybox"
    printf 'FROM scratch\nCOPY busybox /bin/busybox\nCMD ["/bin/busybox", "true"]\n' >"$probe_dir/Containerfile"
    podman build -q -t "$PROBE_IMAGE" "$probe_dir" >/dev/null
}

probe() {
    # Prints podman's error on failure; success means a container really ran.
    podman run --rm --network=none "$PROBE_IMAGE" /bin/busybox true 2>&1 >/dev/null
}

write_conf() {
    # $1: need ulimits (0/1), $2: need runc (0/1)
    mkdir -p "$CONF_DIR"
    {
        echo "# Written by reconciler scripts/setup-host.sh: only the workarounds this host needed."
        if [ "$1" = 1 ]; then
            echo "[containers]"
            echo "# podman's default nofile/nproc ulimits exceed this machine's hard limits."
            echo 'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]'
        fi
        if [ "$2" = 1 ]; then
            echo "[engine]"
            echo "# crun cannot run here (cgroups in hybrid mode); runc can."
            echo 'runtime = "runc"'
        fi
    } >"$CONF_FILE.tmp"
    mv "$CONF_FILE.tmp" "$CONF_FILE"
}

build_probe_image
need_ulimits=0
need_runc=0
if [ -f "$CONF_FILE" ]; then
    grep -q default_ulimits "$CONF_FILE" && need_ulimits=1
    grep -q 'runtime *= *"runc"' "$CONF_FILE" && need_runc=1
fi
attempt=0
while ! err=$(probe); do
    attempt=$((attempt + 1))
    [ $attempt -le 3 ] || die "podman still cannot run a container: $err"
    if grep -qiE 'rlimit|ulimit' <<<"$err" && [ $need_ulimits = 0 ]; then
        log "podman's default ulimits exceed the hard limits here; capping them in $CONF_FILE"
        need_ulimits=1
    elif grep -qiE 'crun|hybrid' <<<"$err" && [ $need_runc = 0 ]; then
        command -v runc >/dev/null || die "crun fails here and runc is not installed."
        log "crun fails here; switching podman to runc in $CONF_FILE"
        need_runc=1
    else
        die "podman cannot run a container, for a reason I have no workaround for: $err"
    fi
    write_conf $need_ulimits $need_runc
done
log "podman runs containers ($( [ -f "$CONF_FILE" ] && echo "with $CONF_FILE" || echo "no workarounds needed"))"

# The pod network is a netavark bridge per node; CNI would ignore our network config silently.
backend=$(podman info --format '{{.Host.NetworkBackend}}' 2>/dev/null || true)
[ "$backend" = netavark ] || die "podman's network backend is '$backend', not netavark: is the netavark package installed?"
log "podman's network backend is netavark"

# Pods publish their ports on loopback addresses (127.244.N.x); prove that path works too.
probe_port=$((20000 + RANDOM % 10000))
probe_ctr=reconciler-probe-$$
podman run -d --rm --name "$probe_ctr" -p "127.0.0.1:$probe_port:8080" "$PROBE_IMAGE" \
    /bin/busybox httpd -f -p 8080 -h /bin >/dev/null
deadline=$((SECONDS + 15))
until [ "$(curl -s -m 1 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$probe_port/" || true)" != 000 ]; do
    if [ $SECONDS -ge $deadline ]; then
        podman rm -f -t 0 "$probe_ctr" >/dev/null 2>&1 || true
        die "a container's port published on 127.0.0.1:$probe_port does not answer; podman networking is broken."
    fi
    sleep 0.2
done
podman rm -f -t 0 "$probe_ctr" >/dev/null 2>&1 || true
log "published container ports answer on loopback"

# --- 3. trust the local plain-HTTP registry -------------------------------------------------
mkdir -p "$(dirname "$REGISTRIES_FILE")"
registries_conf='# Written by reconciler scripts/setup-host.sh: the local registry speaks plain HTTP.
[[registry]]
location = "localhost:5000"
insecure = true

[[registry]]
location = "127.0.0.1:5000"
insecure = true
'
if [ ! -f "$REGISTRIES_FILE" ] || [ "$(cat "$REGISTRIES_FILE")" != "$(printf '%s' "$registries_conf")" ]; then
    printf '%s' "$registries_conf" >"$REGISTRIES_FILE"
    log "wrote $REGISTRIES_FILE"
fi

# --- 4. the local registry ------------------------------------------------------------------
registry_up() { curl -fsS -m 2 -o /dev/null "http://$REGISTRY_ADDR/v2/" 2>/dev/null; }

if registry_up; then
    log "registry already answers on $REGISTRY_ADDR"
else
    mkdir -p "$REGISTRY_DIR/data"
    # Our own config: Debian's default listens on every interface and wants htpasswd auth.
    cat >"$REGISTRY_DIR/config.yml" <<EOF
version: 0.1
log:
  level: warn
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: $REGISTRY_DIR/data
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
EOF
    log "starting docker-registry on $REGISTRY_ADDR (log: $REGISTRY_DIR/registry.log)"
    setsid nohup docker-registry serve "$REGISTRY_DIR/config.yml" \
        >>"$REGISTRY_DIR/registry.log" 2>&1 </dev/null &
    echo $! >"$REGISTRY_DIR/registry.pid"
    deadline=$((SECONDS + 30))
    until registry_up; do
        if ! kill -0 "$(cat "$REGISTRY_DIR/registry.pid")" 2>/dev/null; then
            die "docker-registry exited at start; see $REGISTRY_DIR/registry.log"
        fi
        [ $SECONDS -lt $deadline ] || die "docker-registry did not answer on $REGISTRY_ADDR within 30 s."
        sleep 0.2
    done
    log "registry answers on $REGISTRY_ADDR"
fi
log "done"
