#!/usr/bin/env bash
# The README's main command: set-up (idempotent), then the embedded-default demo.
#
#   bash scripts/demo.sh [OUT] [cove demo flags...]
#
# The real-model comparison (SmolLM2-135M-Instruct, four arms, one seed; under 30
# minutes on 2 CPU cores after the build). Writes the report folder OUT (default
# runs/demo): summary.md, summary.json, plots/*.png, each arm's run folder. Flags:
# `--seeds N` (every arm with N seeds), `--paired` (the paired mechanism test),
# `--model tiny` (the fast toy, a few minutes).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
OUT="runs/demo"
if [[ $# -gt 0 && "$1" != -* ]]; then
  OUT="$1"
  shift
fi
# The build of scripts/test.sh exactly (scripts/build.sh): after either command the other
# compiles nothing. The binaries land in target/debug.
bash scripts/build.sh
exec "${CARGO_TARGET_DIR:-target}/debug/cove" demo --out "$OUT" "$@"
