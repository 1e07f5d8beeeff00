#!/usr/bin/env bash
# Runs the daemon on this repository's examples-repo/ with the embedded defaults
# (the local podman, SQLite state in the default state dir), after the host set-up.
# The watched Git repository is this checkout itself, branch main, path examples-repo:
# commit a change under examples-repo/ and the daemon rolls it out.
# On a terminal the daemon's log is human-readable (structlog's console form, in colour
# unless NO_COLOR is set); piped or under journald it is JSON lines. RECONCILER_LOG_FORMAT=json
# (or console) chooses; <state dir>/reconciler.log is always JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-host.sh
python3 -m pip install -q -e .
./scripts/build-images.sh
exec reconciler daemon --repo "$PWD" --branch "${RECONCILER_BRANCH:-main}" --path examples-repo "$@"
