//! `train-math`: GRPO (with optional Clip-Cov / KL-Cov) on a math dataset scored by the
//! math-answer verifier.
//!
//! ```text
//! train-math                                   # tiny policy on datasets/math, 30 steps
//! train-math --config configs/qwen2.5-7b-kl-cov.toml --set data.train=dapo.parquet
//! train-math --set trainer.loss.control.kind=clip-cov --steps 100 --out runs/clip
//! ```
//! Configuration: embedded defaults (`configs/train-math.toml`), then `--config`, then
//! `--set`/flags. Ctrl-C saves a checkpoint and exits; rerunning with the same run
//! folder resumes.

use clap::Parser;
use cove::app::training::{ModelSpec, RunOptions, TrainArgs, run_training};
use cove::config::TrainConfig;
use cove::data::math::{MathFields, load_math};
use cove::trainer::{Example, Trainer};
use cove::verifiers::math::{MathOptions, MathVerifier};
use std::path::PathBuf;
use std::process::ExitCode;

/// GRPO on a math dataset with the math-answer verifier.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    args: TrainArgs,
}

/// The `[data]` section.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Data {
    /// JSONL or verl Parquet file.
    train: PathBuf,
    /// Field mapping (default: detected from the first row).
    fields: Option<MathFields>,
    /// Use only the first N rows.
    limit: Option<usize>,
}

/// The whole configuration.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    model: ModelSpec,
    data: Data,
    run: RunOptions,
    trainer: TrainConfig,
    verifier: MathOptions,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = run_training(
        include_str!("../../configs/train-math.toml"),
        &cli.args,
        |cfg: &Config| {
            let mut rows = load_math(&cfg.data.train, cfg.data.fields.as_ref())?;
            rows.truncate(cfg.data.limit.unwrap_or(usize::MAX));
            let data = rows
                .into_iter()
                .map(|r| Example {
                    prompt: r.prompt.user_text().to_string(),
                    task: r.answer,
                })
                .collect();
            let policy = cfg.model.load()?;
            let reward = MathVerifier::new(cfg.verifier.clone());
            let trainer = Trainer::new(cfg.trainer.clone(), policy, reward, data)?;
            Ok((trainer, cfg.run.clone()))
        },
    );
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("train-math: error: {e}");
            ExitCode::FAILURE
        }
    }
}
