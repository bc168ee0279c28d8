#!/usr/bin/env bash
# Runs the whole test suite, set-up included (idempotent: a second run skips it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
cargo test --workspace --lib --tests
