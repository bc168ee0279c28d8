//! A toy verifiable task for the trainer tests: answer with digits only.
//!
//! The reward of a response is the fraction of its characters that are ASCII digits
//! (a dense, checkable signal the tiny random policy can climb in a few dozen steps);
//! it is correct when it is non-empty and all digits.

use cove::config::TrainConfig;
use cove::trainer::{Example, Trainer};
use cove::verifiers::{Reward, Score};

/// Reward: fraction of digit characters.
pub struct Digits;

impl Reward for Digits {
    type Task = ();

    fn name(&self) -> &str {
        "digits"
    }

    fn score(&self, _task: &(), response: &str) -> Score {
        let n = response.chars().count();
        let d = response.chars().filter(char::is_ascii_digit).count();
        Score {
            reward: if n == 0 { 0.0 } else { d as f64 / n as f64 },
            correct: n > 0 && d == n,
            details: format!("{d}/{n} digits"),
        }
    }
}

/// Eight short prompts.
pub fn dataset() -> Vec<Example<()>> {
    [
        "A number:",
        "Digits:",
        "Count:",
        "Say 7:",
        "Year:",
        "PIN:",
        "Code:",
        "Sum:",
    ]
    .into_iter()
    .map(|p| Example {
        prompt: p.into(),
        task: (),
    })
    .collect()
}

/// A small, fast configuration: 4 prompts x 8 samples of up to 6 tokens, two
/// mini-batches per step, lr 3e-3.
pub fn small_config(out: &std::path::Path) -> TrainConfig {
    let mut cfg = TrainConfig {
        seed: 3,
        steps: 30,
        prompts_per_step: 4,
        group_size: 8,
        mini_batch_size: 16,
        micro_batch_size: 8,
        logprob_batch_size: 32,
        chat_template: false,
        out_dir: out.to_path_buf(),
        ..TrainConfig::default()
    };
    cfg.rollout.max_new_tokens = 6;
    cfg.optim.lr = 3e-3;
    cfg.optim.weight_decay = 0.0;
    cfg.loss.control = cove::loss::ControlConfig::None;
    cfg.checkpoint.every = 0;
    cfg
}

/// A trainer on the tiny policy (seed 0).
pub fn trainer(cfg: TrainConfig) -> Trainer<Digits> {
    let policy = cove::model::tiny::policy(&Default::default(), 0, tch::Device::Cpu).unwrap();
    Trainer::new(cfg, policy, Digits, dataset()).unwrap()
}
