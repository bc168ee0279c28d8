//! `cove eval`: math accuracy of a policy on a dataset.

use crate::dist::Launch;
use crate::eval::math_scores;
use crate::model::ModelSpec;
use std::path::PathBuf;

/// Arguments of `cove eval`: math accuracy of a policy on a dataset.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// The dataset (JSONL or verl Parquet; layout detected).
    pub data: PathBuf,
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
    /// Only the first N rows.
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
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Runs `cove eval`: samples responses and scores them with the math verifier.
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
    let policy = spec.load(&Launch::from_env()?)?;
    let mut rows = crate::data::math::load_math(&args.data, None)?;
    rows.truncate(args.limit.unwrap_or(usize::MAX));
    let cfg = crate::rollout::SamplingConfig {
        n: args.samples,
        temperature: args.temperature,
        max_new_tokens: args.max_new_tokens,
        seed: args.seed,
        ..Default::default()
    };
    let s = math_scores(&policy, &rows, &cfg)?;
    Ok(format!(
        "{}: {} problems x {} samples, accuracy {:.2}% ({}/{}), pass@{} {:.2}%, mean@{} reward {:.4}\n",
        args.data.display(),
        rows.len(),
        args.samples,
        100.0 * s.pass_at_1,
        s.correct,
        s.problems * s.k,
        s.k,
        100.0 * s.pass_at_k,
        s.k,
        s.mean_at_k,
    ))
}
