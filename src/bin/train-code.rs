//! `train-code`: GRPO on a code dataset scored by the WASM-sandboxed code verifier.
//!
//! ```text
//! train-code                                   # tiny policy on datasets/code, 2 steps
//! train-code --train apps.jsonl --set model.path=Qwen2.5-Coder-7B --set model.device=cuda
//! ```
//! Configuration: embedded defaults (`configs/train-code.toml`), then `--config`, then
//! `--set`/flags. Before training, the reference solutions of the first rows are run
//! through the sandbox as a check that the verifier works. Ctrl-C saves a checkpoint.

use clap::Parser;
use cove::app::training::{ModelSpec, RunOptions, TrainArgs, run_training};
use cove::config::TrainConfig;
use cove::data::code::{CodeLayout, load_code};
use cove::trainer::{Example, Trainer};
use cove::verifiers::Reward;
use cove::verifiers::code::{CodeConfig, CodeVerifier, TestSuite};
use std::path::PathBuf;
use std::process::ExitCode;

/// GRPO on a code dataset with the sandboxed code verifier.
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
    /// Layout (default: detected from the first row).
    layout: Option<CodeLayout>,
    /// Use only the first N rows.
    limit: Option<usize>,
    /// Run this many reference solutions through the verifier before training.
    check_solutions: usize,
}

/// The whole configuration.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    model: ModelSpec,
    data: Data,
    run: RunOptions,
    trainer: TrainConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = run_training(
        include_str!("../../configs/train-code.toml"),
        &cli.args,
        |cfg: &Config| {
            let mut rows = load_code(&cfg.data.train, cfg.data.layout)?;
            rows.truncate(cfg.data.limit.unwrap_or(usize::MAX));
            let verifier = CodeVerifier::new(CodeConfig::default())?;
            let mut data = Vec::with_capacity(rows.len());
            let mut checked = (0, 0);
            for row in rows {
                let suite: TestSuite = serde_json::from_value(row.tests.clone()).map_err(|e| {
                    format!(
                        "{}: row `{}`: field `tests`: {e}",
                        cfg.data.train.display(),
                        row.id
                    )
                })?;
                if let Some(solution) = row
                    .solution
                    .as_deref()
                    .filter(|_| checked.1 < cfg.data.check_solutions)
                {
                    let score = verifier.score(&suite, solution);
                    checked.1 += 1;
                    checked.0 += score.correct as usize;
                    if !score.correct {
                        eprintln!(
                            "warning: reference solution of `{}` fails: {}",
                            row.id, score.details
                        );
                    }
                }
                data.push(Example {
                    prompt: row.prompt.user_text().to_string(),
                    task: suite,
                });
            }
            if checked.1 > 0 {
                eprintln!(
                    "sandbox check: {}/{} reference solutions accepted",
                    checked.0, checked.1
                );
            }
            let policy = cfg.model.load()?;
            let trainer = Trainer::new(cfg.trainer.clone(), policy, verifier, data)?;
            Ok((trainer, cfg.run.clone()))
        },
    );
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("train-code: error: {e}");
            ExitCode::FAILURE
        }
    }
}
