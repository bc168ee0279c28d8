#!/usr/bin/env bash
# The README's main command: set-up (idempotent), then the embedded-default demo.
#
#   bash scripts/demo.sh [OUT] [cove demo flags...]
#
# Writes the report folder OUT (default runs/demo): summary.md, plots/*.png, per-method
# metrics.jsonl. About 6 minutes on 2 CPU cores after the build. The real-model
# experiment: `bash scripts/demo.sh runs/smollm2 --model smollm2-135m-instruct` (about
# 40 minutes on 2 CPU cores).
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
