//! `cove eval`: a policy's scores (pass@1, pass@k, mean@k) on a math or code dataset,
//! overall and per level when the rows have levels.

use crate::data::code::{CodeExample, load_code};
use crate::data::math::{MathExample, load_math};
use crate::dist::Launch;
use crate::eval::{EvalScores, code_scores, math_scores};
use crate::model::{ModelSpec, Policy};
use crate::rollout::SamplingConfig;
use crate::verifiers::code::{CodeConfig, CodeVerifier, WorkerCommand};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Which verifier scores the responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EvalTask {
    /// The math-answer verifier (any math layout).
    Math,
    /// The sandboxed code verifier (any code layout).
    Code,
}

/// Arguments of `cove eval`.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// The dataset (JSONL or verl Parquet; layout detected).
    pub data: PathBuf,
    /// The task: `math` (answers) or `code` (test suites).
    #[arg(long, value_enum, default_value = "math")]
    pub task: EvalTask,
    /// `tiny`, a named model (`smollm2-135m-instruct`) or a Hugging Face folder.
    #[arg(long, default_value = "tiny")]
    pub model: String,
    /// Weights to load over the model's (e.g. the demo's `sft.safetensors`).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// `cpu`, `cuda` or `auto`.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Parameter dtype.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Only rows of these levels (`--levels 1,4`; rows without a level are dropped).
    #[arg(long, value_delimiter = ',')]
    pub levels: Vec<u32>,
    /// Only the first N rows (after the level filter).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Samples per problem (accuracy is their mean).
    #[arg(long, default_value_t = 1)]
    pub samples: usize,
    /// Sampling temperature (0: greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Longest response in tokens.
    #[arg(long, default_value_t = 1024)]
    pub max_new_tokens: usize,
    /// A string that ends a response (repeatable; `train-code`'s rollouts stop at the
    /// closing code fence, `--stop $'\n```'`).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// The rows of one task, scored by its verifier.
enum Rows {
    Math(Vec<MathExample>),
    Code(Vec<CodeExample>, Box<CodeVerifier>),
}

impl Rows {
    fn len(&self) -> usize {
        match self {
            Rows::Math(rows) => rows.len(),
            Rows::Code(rows, _) => rows.len(),
        }
    }

    /// The distinct levels of the rows, when every row has one.
    fn levels(&self) -> Option<BTreeSet<u32>> {
        match self {
            Rows::Math(rows) => rows.iter().map(|r| r.level).collect(),
            Rows::Code(rows, _) => rows.iter().map(|r| r.level).collect(),
        }
    }

    /// The scores of the rows whose level `keep` accepts.
    fn scores(
        &self,
        policy: &Policy,
        keep: impl Fn(Option<u32>) -> bool,
        cfg: &SamplingConfig,
    ) -> Result<EvalScores, Box<dyn std::error::Error>> {
        match self {
            Rows::Math(rows) => {
                let rows: Vec<MathExample> =
                    rows.iter().filter(|r| keep(r.level)).cloned().collect();
                Ok(math_scores(policy, &rows, cfg)?)
            }
            Rows::Code(rows, verifier) => {
                let rows: Vec<CodeExample> =
                    rows.iter().filter(|r| keep(r.level)).cloned().collect();
                code_scores(policy, &rows, verifier, cfg)
            }
        }
    }
}

/// One line of the report.
fn line(label: &str, s: &EvalScores) -> String {
    format!(
        "{label}: {} problems x {} samples, pass@1 {:.2}% ({}/{}), pass@{} {:.2}%, mean@{} reward {:.4}\n",
        s.problems,
        s.k,
        100.0 * s.pass_at_1,
        s.correct,
        s.problems * s.k,
        s.k,
        100.0 * s.pass_at_k,
        s.k,
        s.mean_at_k,
    )
}

/// Runs `cove eval`: samples responses and scores them with the task's verifier; with
/// levels in the rows, one line per level after the overall one.
pub fn run_eval(args: &EvalArgs) -> Result<String, Box<dyn std::error::Error>> {
    let dtype: crate::model::Dtype = toml::Value::String(args.dtype.clone())
        .try_into()
        .map_err(|e| format!("--dtype {}: {e}", args.dtype))?;
    let spec = ModelSpec {
        path: args.model.clone(),
        dtype,
        device: args.device.clone(),
        tiny_seed: 0,
        weights: args.weights.clone(),
        lora: None,
    };
    let launch = Launch::from_env()?;
    let wanted = |level: Option<u32>| {
        args.levels.is_empty() || level.is_some_and(|l| args.levels.contains(&l))
    };
    let limit = args.limit.unwrap_or(usize::MAX);
    let rows = match args.task {
        EvalTask::Math => {
            let mut rows = load_math(&args.data, None)?;
            rows.retain(|r| wanted(r.level));
            rows.truncate(limit);
            Rows::Math(rows)
        }
        EvalTask::Code => {
            let mut rows = load_code(&args.data, None)?;
            rows.retain(|r| wanted(r.level));
            rows.truncate(limit);
            let verifier = CodeVerifier::with_worker_processes(
                CodeConfig {
                    threads: launch.cores_per_rank(),
                    ..CodeConfig::default()
                },
                WorkerCommand::current_exe()?,
            )?;
            Rows::Code(rows, Box::new(verifier))
        }
    };
    if rows.len() == 0 {
        return Err(format!("{}: no rows selected", args.data.display()).into());
    }
    let policy = spec.load(&launch)?;
    let cfg = SamplingConfig {
        n: args.samples,
        temperature: args.temperature,
        max_new_tokens: args.max_new_tokens,
        seed: args.seed,
        stop: args.stop.clone(),
        ..Default::default()
    };
    let levels = rows.levels().unwrap_or_default();
    let mut report = String::new();
    if levels.len() > 1 {
        // Each level sampled on its own: the overall line is their sum.
        let mut total = EvalScores {
            k: cfg.n,
            problems: 0,
            correct: 0,
            pass_at_1: 0.0,
            pass_at_k: 0.0,
            mean_at_k: 0.0,
        };
        let mut lines = String::new();
        for &level in &levels {
            let s = rows.scores(&policy, |l| l == Some(level), &cfg)?;
            lines.push_str(&line(&format!("  level {level}"), &s));
            let n = s.problems as f64;
            total.problems += s.problems;
            total.correct += s.correct;
            total.pass_at_1 += s.pass_at_1 * n;
            total.pass_at_k += s.pass_at_k * n;
            total.mean_at_k += s.mean_at_k * n;
        }
        let n = total.problems.max(1) as f64;
        total.pass_at_1 /= n;
        total.pass_at_k /= n;
        total.mean_at_k /= n;
        report.push_str(&line(&args.data.display().to_string(), &total));
        report.push_str(&lines);
    } else {
        let s = rows.scores(&policy, |_| true, &cfg)?;
        report.push_str(&line(&args.data.display().to_string(), &s));
    }
    Ok(report)
}
