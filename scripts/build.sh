#!/usr/bin/env bash
# The one build both README commands run (after scripts/setup.sh), so that after either
# one the other compiles nothing: the workspace's tests and binaries (dev profile; the
# binaries land in target/debug), the custom-task example (examples/custom_reward.rs,
# which the tests run for a step), the learner library alone (no command line: feature
# `cli` off, the check that the library builds without clap, indicatif, ctrlc, plotters
# and axum), then the cove_verifiers wheel from the same artifacts.
# The Python extension crate is built by maturin only (it is a cdylib for CPython).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo test --workspace --exclude cove-verifiers-python --lib --tests --no-run
cargo build --example custom_reward
cargo check -p cove --no-default-features
bash scripts/build_wheel.sh
