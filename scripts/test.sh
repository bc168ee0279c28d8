#!/usr/bin/env bash
# Runs the whole test suite, set-up included (idempotent: a second run skips it): the
# Rust tests of every crate, then the Python package's tests in a fresh venv.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
bash scripts/build.sh
cargo test --workspace --exclude cove-verifiers-python --lib --tests
bash scripts/test_python.sh
