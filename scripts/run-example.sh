#!/usr/bin/env bash
# Runs the daemon on this repository's examples-repo/ with the embedded defaults
# (the local podman, SQLite state in the default state dir), after the host set-up.
# The watched Git repository is this checkout itself, branch main, path examples-repo:
# commit a change under examples-repo/ and the daemon rolls it out.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-host.sh
python3 -m pip install -q -e .
./scripts/build-images.sh
exec reconciler daemon --repo "$PWD" --branch "${RECONCILER_BRANCH:-main}" --path examples-repo "$@"
