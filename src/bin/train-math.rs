//! `train-math`: GRPO (with optional Clip-Cov / KL-Cov) on a math dataset scored by the
//! math-answer verifier.
//!
//! ```text
//! train-math                                   # SmolLM2-135M-Instruct on datasets/math, 30 steps
//! train-math --set model.path=tiny             # the tiny built-in policy
//! train-math --config configs/qwen2.5-7b-kl-cov.toml --set data.train=dapo.parquet
//! train-math --set trainer.loss.control.kind=clip-cov --steps 100 --out runs/clip
//! ```
//! Configuration: embedded defaults (`configs/train-math.toml`), then `--config`, then
//! `--set`/flags. Ctrl-C saves a checkpoint and exits; the same command with `--resume`
//! continues it (a run folder that holds a run is refused without it).

use clap::Parser;
use cove::cli::train::{TrainArgs, training_main};
use cove::recipe::{MATH_DEFAULTS, MathRun};
use std::process::ExitCode;

/// GRPO on a math dataset with the math-answer verifier.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    args: TrainArgs,
}

fn main() -> ExitCode {
    // The Python tool's sandbox workers (`env.kind = "code-interpreter"`) are this
    // executable started again.
    cove::verifiers::code::serve_if_worker();
    let cli = Cli::parse();
    training_main("train-math", MATH_DEFAULTS, &cli.args, MathRun::build)
}
