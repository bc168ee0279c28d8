#!/usr/bin/env bash
# The README's main command: set-up (idempotent), then the embedded-default demo in the
# dev profile. Writes the report folder (default runs/demo; pass another as $1):
# summary.md, plots/*.png, per-method metrics.jsonl. About 10 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
cargo run --bin cove -- demo --out "${1:-runs/demo}"
