#!/usr/bin/env bash
# Runs the whole test suite, set-up included (idempotent: a second run skips it): the
# Rust tests and doctests of every crate, one step of the custom-task example on the
# tiny policy (the README's "Your own task"), then the Python package's tests in a
# fresh venv.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
bash scripts/build.sh
# A failing test's message (a binary's own error output) is what the end of a CI log
# should hold, not the backtraces that RUST_BACKTRACE=1 would print after it.
export RUST_BACKTRACE=0
cargo test --workspace --exclude cove-verifiers-python --lib --tests
cargo test --workspace --exclude cove-verifiers-python --doc
example_run="$(mktemp -d)"
"${CARGO_TARGET_DIR:-target}/debug/examples/custom_reward" --quiet --steps 1 \
    --set 'model.path="tiny"' --out "$example_run/run"
test "$(wc -l <"$example_run/run/metrics.jsonl")" -eq 1
rm -rf "$example_run"
bash scripts/test_python.sh
