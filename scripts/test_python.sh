#!/usr/bin/env bash
# Runs the cove_verifiers pytest suite against the built wheel (scripts/build_wheel.sh)
# in a fresh virtual environment each time, offline: target/tmp/pyenv-test gets the
# wheel and pytest from .cache/cove/wheels with `pip install --no-index`, and the tests
# run from the repository root (they compare with target/debug/cove).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
PY="$ROOT/.venv/bin/python"
WHEELHOUSE="$ROOT/.cache/cove/wheels"
ENV_DIR="$ROOT/target/tmp/pyenv-test"
log() { echo "test_python: $*" >&2; }

ls "$WHEELHOUSE"/pytest-*.whl >/dev/null 2>&1 \
  || { log "no pytest wheel in $WHEELHOUSE; run scripts/setup.sh first"; exit 1; }
WHEEL="$(ls -t "$ROOT"/target/wheels/cove_verifiers-*.whl 2>/dev/null | head -n1 || true)"
[[ -n "$WHEEL" ]] || { log "no wheel in target/wheels; run scripts/build_wheel.sh first"; exit 1; }

# (b) A fresh environment, offline.
rm -rf "$ENV_DIR"
"$PY" -m venv "$ENV_DIR"
"$ENV_DIR/bin/python" -m pip install --quiet --disable-pip-version-check --no-index \
  --find-links "$WHEELHOUSE" "$WHEEL" pytest

# (c) The tests, from the repository root so that they find target/debug/cove; run
# outside the source tree's package folder so the installed wheel is what is imported.
export COVE_BIN="${COVE_BIN:-$ROOT/target/debug/cove}"
export COVE_COMPILED_DIR="${COVE_COMPILED_DIR:-$ROOT/.cache/cove/compiled}"
log "running pytest verifiers/python/tests"
"$ENV_DIR/bin/python" -m pytest verifiers/python/tests -q -p no:cacheprovider
