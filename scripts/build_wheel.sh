#!/usr/bin/env bash
# Builds the cove_verifiers wheel (dev profile, the test build's artifacts) into
# target/wheels/. Skips the work when the wheel is newer than everything it is built from,
# so a second run compiles nothing. Run after the workspace build (scripts/build.sh).
#
#   `cargo build -p cove-verifiers-python --lib` first: it must rebuild nothing but pyo3*,
#   cove-verifiers* and _native, else the feature alignment block in
#   verifiers/python/Cargo.toml has drifted and the wheel would rebuild wasmtime; then
#   `maturin build --profile dev` writes the wheel.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
PY="$ROOT/.venv/bin/python"
log() { echo "build_wheel: $*" >&2; }

[[ -x "$PY" ]] || { log "no .venv/bin/python; run scripts/setup.sh first"; exit 1; }
[[ -x "$ROOT/.venv/bin/maturin" ]] || { log "no maturin in .venv; run scripts/setup.sh first"; exit 1; }

# The same environment for cargo and maturin, so neither invalidates the other's pyo3.
export PYO3_PYTHON="$PY"
export PYO3_BUILD_EXTENSION_MODULE=1
export LIBTORCH="${LIBTORCH:-$ROOT/.libtorch}"
# maturin points pyo3 at a config file it writes; the check build must see the same one.
PYO3_CFG="$ROOT/target/maturin/pyo3-config-$(rustc -vV | sed -n "s/^host: //p")-$("$PY" -c "import sys; print(\"%d.%d\" % sys.version_info[:2])")-abi3.txt"
if [[ -f "$PYO3_CFG" ]]; then export PYO3_CONFIG_FILE="$PYO3_CFG"; fi


WHEEL="$(ls -t "$ROOT"/target/wheels/cove_verifiers-*.whl 2>/dev/null | head -n1 || true)"
if [[ -n "$WHEEL" && -z "$(find verifiers/src verifiers/python/src verifiers/python/python \
      verifiers/python/Cargo.toml verifiers/python/pyproject.toml verifiers/Cargo.toml Cargo.lock \
      -newer "$WHEEL" -not -name '__pycache__' -not -name '*.pyc' -print -quit)" ]]; then
  log "$(basename "$WHEEL") is up to date"
  exit 0
fi

log "checking that the wheel's dependencies are already built"
MESSAGES="$ROOT/target/tmp/test_python-cargo.json"
mkdir -p "$ROOT/target/tmp"
cargo build -p cove-verifiers-python --lib --message-format=json >"$MESSAGES"
"$PY" - "$MESSAGES" <<'PYEOF'
import json, sys
allowed = ("pyo3", "cove-verifiers", "cove_verifiers", "_native")
stale = []
for line in open(sys.argv[1]):
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if msg.get("reason") != "compiler-artifact" or msg.get("fresh", True):
        continue
    pkgid = msg.get("package_id", "")
    frag = pkgid.rsplit("#", 1)[-1]
    name = frag.rsplit("@", 1)[0] if "@" in frag else pkgid.split("#")[0].rstrip("/").rsplit("/", 1)[-1]
    if not (name.startswith(allowed) or msg.get("target", {}).get("name") == "_native"):
        stale.append(f"{name} ({msg.get('target', {}).get('name')})")
if stale:
    print("build_wheel: building cove-verifiers-python alone rebuilt " + ", ".join(sorted(set(stale))) + ".\n"
          "The feature alignment block in verifiers/python/Cargo.toml no longer matches the\n"
          "workspace build (the wheel would rebuild wasmtime). Update it to request the features\n"
          "the workspace build uses (compare `cargo tree -e features -p cove-verifiers-python`\n"
          "with the workspace's) and run this again.", file=sys.stderr)
    sys.exit(1)
PYEOF

log "building the wheel (maturin, dev profile)"
rm -f "$ROOT"/target/wheels/cove_verifiers-*.whl
"$ROOT/.venv/bin/maturin" build --profile dev -m verifiers/python/Cargo.toml -i "$PY" \
  --out "$ROOT/target/wheels" --strip --quiet
WHEEL="$(ls -t "$ROOT"/target/wheels/cove_verifiers-*.whl | head -n1)"
log "built $(basename "$WHEEL") ($(du -h "$WHEEL" | cut -f1))"

