//! Your own task in a few lines: a [`Reward`] and a dataset loader for a task that is not
//! math or code (spell a word backwards), trained through the same entry point as the
//! bundled `train-math` and `train-code`: progress bar, Ctrl-C checkpoints, `--resume`,
//! plots, `--config` / `--set` and data parallelism (`mpirun -n 2 ...`) come with it.
//!
//! ```text
//! cargo run --example custom_reward -- --steps 20                  # SmolLM2-135M-Instruct
//! cargo run --example custom_reward -- --steps 1 --set model.path=\"tiny\"
//! ```

use clap::Parser;
use cove::cli::train::{TrainArgs, training_main};
use cove::dist::Launch;
use cove::model::ModelSpec;
use cove::recipe::{BuildResult, RunOptions};
use cove::trainer::{Example, Trainer};
use cove::verifiers::{Reward, Score};
use std::path::PathBuf;

/// 1 for the reversed word as the response's last word, else the fraction of its
/// letters in place (a shaped reward: GRPO needs different rewards within a group).
struct Backwards;

impl Reward for Backwards {
    type Task = String;
    fn name(&self) -> &str {
        "backwards"
    }
    fn score(&self, reversed: &String, response: &str) -> Score {
        let answer = response.split_whitespace().last().unwrap_or("");
        let answer = answer
            .trim_matches(|c: char| !c.is_alphanumeric())
            .to_lowercase();
        let in_place = answer
            .chars()
            .zip(reversed.chars())
            .filter(|(a, b)| a == b)
            .count();
        let correct = answer == *reversed;
        Score {
            reward: if correct {
                1.0
            } else {
                in_place as f64 / reversed.len().max(answer.len()) as f64
            },
            correct,
            details: format!("answered {answer:?}"),
        }
    }
}

/// One `{"word": ...}` per JSONL line becomes a prompt and its reversed word.
fn load(path: &PathBuf) -> Result<Vec<Example<String>>, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line)?;
            let word = row["word"]
                .as_str()
                .ok_or("a row without \"word\"")?
                .to_string();
            Ok(Example {
                prompt: format!("Spell the word \"{word}\" backwards. Answer with that one word.")
                    .into(),
                task: word.chars().rev().collect(),
            })
        })
        .collect()
}

/// The configuration: the bundled binaries' `[model]`, `[run]` and `[trainer]`, and this
/// task's `[data]`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BackwardsRun {
    model: ModelSpec,
    data: BackwardsData,
    run: RunOptions,
    trainer: cove::config::TrainConfig,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BackwardsData {
    train: PathBuf,
}

impl BackwardsRun {
    fn build(&self, launch: &Launch) -> BuildResult<Backwards> {
        let data = load(&self.data.train)?;
        let policy = self.model.load(launch)?;
        let trainer = Trainer::new(self.trainer.clone(), policy, Backwards, data)?;
        // `trainer.ref_kl`'s frozen reference, as the bundled binaries give it.
        let trainer = cove::recipe::with_ref_kl_reference(trainer, &self.model, launch)?;
        Ok((trainer, self.run.clone()))
    }
}

/// Embedded defaults, overridden by `--config FILE` and `--set key=value`.
const DEFAULTS: &str = r#"
[model]
path = "smollm2-135m-instruct"
dtype = "f32"
device = "auto"
tiny_seed = 0

[data]
train = "datasets/reverse/words.jsonl"

[run]
entropy_warn_fraction = 0.3
threads = 0

[trainer]
steps = 20
prompts_per_step = 4
group_size = 8
mini_batch_size = 16
micro_batch_size = 16
out_dir = "runs/custom-reward"

[trainer.rollout]
max_new_tokens = 16
"#;

/// Trains a policy to spell words backwards.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: TrainArgs,
}

fn main() -> std::process::ExitCode {
    training_main(
        "custom_reward",
        DEFAULTS,
        &Cli::parse().args,
        BackwardsRun::build,
    )
}
