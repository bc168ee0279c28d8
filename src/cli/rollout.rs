//! `cove rollout`: sample episodes of an environment on a math dataset and write each as
//! one JSON line, to look at what the policy does with its tools.

use crate::data::math::load_math;
use crate::dist::Launch;
use crate::env::{CodeInterpreter, EnvKind, EnvSection, Environment, SingleTurn, ToolFormat};
use crate::eval::prompt_ids;
use crate::model::{Message, ModelSpec};
use crate::rollout::{MultiTurnEngine, RolloutEngine, RolloutRequest, SamplingConfig, Trajectory};
use crate::verifiers::code::{CodeConfig, CodeVerifier, WorkerCommand};
use crate::verifiers::math::MathVerifier;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// Arguments of `cove rollout`.
#[derive(Debug, Clone, clap::Args)]
pub struct RolloutArgs {
    /// The environment: `code-interpreter` (the Python tool) or `single-turn`.
    #[arg(long, value_enum, default_value = "code-interpreter")]
    pub env: EnvChoice,
    /// `tiny`, a named model (`smollm2-135m-instruct`) or a Hugging Face folder.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    pub model: String,
    /// Math problems (JSONL or verl Parquet; any math layout); answers are verified.
    #[arg(long)]
    pub input: PathBuf,
    /// Only the first N problems.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Episodes per problem.
    #[arg(long, default_value_t = 1)]
    pub samples: usize,
    /// Where the episodes go, one JSON line each (`messages`, `tool_calls`, `reward`,
    /// `token_ids`, `loss_mask`, ...).
    #[arg(long)]
    pub out: PathBuf,
    /// Sampling temperature (0: greedy).
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Longest assistant turn, in tokens.
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    /// Most assistant turns per episode.
    #[arg(long, default_value_t = 4)]
    pub max_turns: usize,
    /// Most tool calls per episode.
    #[arg(long, default_value_t = 3)]
    pub max_tool_calls: usize,
    /// Most tokens after the prompt, tool output included.
    #[arg(long, default_value_t = 1024)]
    pub max_total_tokens: usize,
    /// How the policy calls the tool: `auto` (its chat template's `<tool_call>` format
    /// when it has one, else fenced programs), `fenced` or `tool-call`.
    #[arg(long, value_enum, default_value = "auto")]
    pub tool_format: FormatChoice,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// `cpu`, `cuda` or `auto`.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

/// `--env`'s values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EnvChoice {
    /// One response per problem.
    SingleTurn,
    /// The Python tool over several turns.
    CodeInterpreter,
}

/// `--tool-format`'s values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatChoice {
    /// The chat template's `<tool_call>` format when it has one, else fenced.
    Auto,
    /// Fenced ```` ```python ```` programs, output in a fenced block.
    Fenced,
    /// `<tool_call>` JSON, output as a `tool` message.
    ToolCall,
}

/// Runs `cove rollout`; returns the summary line.
pub fn run_rollout(args: &RolloutArgs) -> Result<String, Box<dyn std::error::Error>> {
    let section = EnvSection {
        kind: match args.env {
            EnvChoice::SingleTurn => EnvKind::SingleTurn,
            EnvChoice::CodeInterpreter => EnvKind::CodeInterpreter,
        },
        max_turns: args.max_turns,
        max_tool_calls: args.max_tool_calls,
        max_total_tokens: args.max_total_tokens,
        tool_format: match args.tool_format {
            FormatChoice::Auto => ToolFormat::Auto,
            FormatChoice::Fenced => ToolFormat::Fenced,
            FormatChoice::ToolCall => ToolFormat::ToolCall,
        },
        ..EnvSection::default()
    };
    section.validate()?;
    let mut rows = load_math(&args.input, None)?;
    rows.truncate(args.limit.unwrap_or(usize::MAX));
    if rows.is_empty() {
        return Err(format!("{}: no rows", args.input.display()).into());
    }
    let launch = Launch::from_env()?;
    let spec = ModelSpec {
        path: args.model.clone(),
        dtype: crate::model::Dtype::F32,
        device: args.device.clone(),
        tiny_seed: 0,
        weights: None,
        lora: None,
    };
    let policy = spec.load(&launch)?;
    let answers: Vec<String> = rows.iter().map(|r| r.answer.clone()).collect();
    let verifier = MathVerifier::new(Default::default());
    let limits = section.episode_limits();
    let (mut engine, openings): (Box<dyn RolloutEngine>, Vec<_>) = match section.kind {
        EnvKind::SingleTurn => {
            let env = SingleTurn(verifier);
            let openings = rows.iter().map(|r| env.opening(&r.prompt)).collect();
            (
                Box::new(MultiTurnEngine::new(env, answers, limits)),
                openings,
            )
        }
        EnvKind::CodeInterpreter => {
            let runner = CodeVerifier::with_worker_processes(
                CodeConfig {
                    threads: launch.cores_per_rank(),
                    limits: section.limits(),
                    ..CodeConfig::default()
                },
                WorkerCommand::current_exe()?,
            )?;
            let env = CodeInterpreter::new(
                verifier,
                Arc::new(runner),
                section.limits(),
                section.max_output_chars,
            )
            .with_format(section.tool_format.resolve(&policy));
            let openings = rows.iter().map(|r| env.opening(&r.prompt)).collect();
            (
                Box::new(MultiTurnEngine::new(env, answers, limits)),
                openings,
            )
        }
    };
    let prompts = prompt_ids(&policy, openings.iter())?;
    let indices: Vec<usize> = (0..rows.len()).collect();
    let keys: Vec<u64> = (0..rows.len() as u64).collect();
    let sampling = SamplingConfig {
        n: args.samples,
        temperature: args.temperature,
        max_new_tokens: args.max_new_tokens,
        seed: args.seed,
        ..SamplingConfig::default()
    };
    let started = std::time::Instant::now();
    let episodes = engine.generate(
        &policy,
        &RolloutRequest {
            prompts: &prompts,
            tasks: &indices,
            keys: &keys,
            sampling: &sampling,
            policy_version: 0,
        },
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let mut out = Vec::new();
    for (i, t) in episodes.iter().enumerate() {
        let opening = openings[t.group].messages();
        let line = episode_json(t, &rows[t.group].id, i % args.samples, &opening);
        writeln!(out, "{line}")?;
    }
    std::fs::write(&args.out, out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let calls: usize = episodes
        .iter()
        .filter_map(|t| t.episode.as_ref())
        .map(|e| e.tool_calls)
        .sum();
    let correct = episodes
        .iter()
        .filter(|t| t.score.as_ref().is_some_and(|s| s.correct))
        .count();
    Ok(format!(
        "cove rollout: {} episodes ({} problems x {}) in {seconds:.1} s, {calls} tool calls, \
         {correct} correct; wrote {}",
        episodes.len(),
        rows.len(),
        args.samples,
        args.out.display()
    ))
}

/// One episode as `cove rollout` writes it.
fn episode_json(t: &Trajectory, id: &str, sample: usize, opening: &[Message]) -> serde_json::Value {
    let episode = t.episode.clone().unwrap_or_default();
    let mut messages = opening.to_vec();
    messages.extend(episode.messages);
    let (reward, correct, details) = match &t.score {
        Some(s) => (s.reward, s.correct, s.details.as_str()),
        None => (0.0, false, ""),
    };
    serde_json::json!({
        "id": id,
        "sample": sample,
        "messages": messages,
        "tool_calls": episode.tool_calls,
        "tool_errors": episode.tool_errors,
        "reward": reward,
        "correct": correct,
        "details": details,
        "finish": t.finish,
        "prompt_len": t.prompt_len,
        "token_ids": t.tokens,
        "loss_mask": t.loss_mask.iter().map(|&m| u8::from(m)).collect::<Vec<_>>(),
    })
}
