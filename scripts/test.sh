#!/usr/bin/env bash
# The whole test suite, from a fresh machine: host set-up, the package and its test
# dependencies, the example images in the local registry, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-host.sh
python3 -m pip install -q -e '.[test]'
./scripts/build-images.sh
# The checks first (seconds): the layering contract in .importlinter, lint, types (pyproject.toml).
lint-imports --no-cache >/dev/null || lint-imports --no-cache
ruff check --quiet .
mypy
exec python3 -m pytest -q "$@"
