//! `train-code`: GRPO on a code dataset scored by the WASM-sandboxed code verifier.
//!
//! ```text
//! train-code                                   # tiny policy on datasets/code, 2 steps
//! train-code --train apps.jsonl --set model.path=Qwen2.5-Coder-7B --set model.device=cuda
//! ```
//! Configuration: embedded defaults (`configs/train-code.toml`), then `--config`, then
//! `--set`/flags. Before training, the reference solutions of the first rows are run
//! through the sandbox as a check that the verifier works. Ctrl-C saves a checkpoint;
//! the same command with `--resume` continues it.

use clap::Parser;
use cove::cli::train::{TrainArgs, training_main};
use cove::recipe::{CODE_DEFAULTS, CodeRun};
use std::process::ExitCode;

/// GRPO on a code dataset with the sandboxed code verifier.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    args: TrainArgs,
}

fn main() -> ExitCode {
    // Rewards run in worker processes started from this binary (see `CodeRun::build`).
    cove::verifiers::code::serve_if_worker();
    let cli = Cli::parse();
    training_main("train-code", CODE_DEFAULTS, &cli.args, CodeRun::build)
}
