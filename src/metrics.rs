//! Per-step training metrics: one JSON object per line in `metrics.jsonl`, plus a
//! one-line human summary.

use crate::loss::CovStats;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Seconds spent in each phase of a step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseSeconds {
    /// Sampling responses.
    pub rollout: f64,
    /// Scoring responses (in parallel).
    pub reward: f64,
    /// Recomputing old log-probabilities (and the reference model's).
    pub old_logprob: f64,
    /// PPO epochs over mini- and micro-batches, optimizer steps included.
    pub update: f64,
    /// Pushing the updated weights to an inference server and probing it (0 for an
    /// in-process engine).
    #[serde(default)]
    pub weight_sync: f64,
    /// The whole step.
    pub total: f64,
}

/// Everything logged about one training step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Step number (1-based, after the step).
    pub step: u64,
    /// Mean reward of the step's responses.
    pub reward_mean: f64,
    /// Fraction of responses scored correct.
    pub accuracy: f64,
    /// Policy entropy: masked token mean over the step's responses (nats).
    pub entropy: f64,
    /// Covariance statistics of the step's batch under the policy that sampled it.
    pub cov: CovStats,
    /// Fraction of valid tokens selected by the entropy control (over all updates).
    pub selected_frac: f64,
    /// Share of each optimizer mini-batch's positive covariance mass that the control's
    /// selection carried, mean over the step's mini-batches (`None` for a control that
    /// does not select, or outside `mini_batch` scope; the batch's own concentration is
    /// in `cov` for every control).
    #[serde(default)]
    pub selected_share: Option<f64>,
    /// Tokens the control selected per optimizer mini-batch, mean over the step's
    /// mini-batches (same `None` cases as `selected_share`).
    #[serde(default)]
    pub selected_tokens: Option<f64>,
    /// Fraction of valid tokens whose PPO clipped term is active.
    pub clip_frac: f64,
    /// Mean of `old_logp - logp` over the updates' valid tokens.
    pub approx_kl: f64,
    /// Mean policy loss over the mini-batches.
    pub loss: f64,
    /// Global gradient norm before clipping (mean over optimizer steps).
    pub grad_norm: f64,
    /// Learning rate of the step's last optimizer step.
    pub lr: f64,
    /// The entropy control's current strength (ratio, beta or coefficient).
    pub control_strength: f64,
    /// Mean response length (tokens).
    pub response_len_mean: f64,
    /// Longest response (tokens).
    pub response_len_max: usize,
    /// Fraction of responses cut at the length limit.
    pub truncation_rate: f64,
    /// Groups dropped by dynamic sampling (equal rewards).
    pub groups_dropped: usize,
    /// Seconds per phase.
    pub seconds: PhaseSeconds,
    /// Response tokens trained on per second of the whole step.
    pub tokens_per_s: f64,
    /// Mean Jaccard overlap, over the mini-batches after a step's first, of the
    /// Clip-Cov / KL-Cov tokens selected from the current policy's log-probs with
    /// those the old (rollout) log-probs would select (`selection_logp = "current"`
    /// only; `None` otherwise).
    #[serde(default)]
    pub selection_overlap_old: Option<f64>,
    /// A 64-bit digest (hex) of which tokens Clip-Cov / KL-Cov selected, by global
    /// position in each optimizer mini-batch: equal digests mean the same tokens were
    /// selected, so runs (any world size, any micro-batching) can be compared
    /// token for token. `None` for a control that does not select, or outside
    /// `mini_batch` scope.
    #[serde(default)]
    pub selection_digest: Option<String>,
    /// The held-out scores taken after this step (a [`crate::trainer::Evaluation`]:
    /// `pass@1`, `pass@k`, `mean@k` from `k` samples per problem), when one was due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval: Option<crate::eval::EvalScores>,
    /// The policy's mean token entropy after this step on a fixed probe (the same
    /// prompts and responses every step; see [`crate::eval::Probe`]), when one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_entropy: Option<f64>,
    /// Tool use of the step's episodes, when a multi-turn engine sampled them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<ToolMetrics>,
    /// Mean k3 estimate of `KL(behaviour || old)` over the step's tokens: the gap between
    /// the log-probs the rollout engine sampled with and the trainer's recomputed old
    /// ones (`None` when they are not both known: `reuse_rollout_logprobs`, or an engine
    /// without log-probs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_mismatch_kl: Option<f64>,
    /// Largest token ratio `pi_old / pi_behaviour` of the step (same `None` case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_ratio_max: Option<f64>,
    /// How many policy versions (training steps) the policy that sampled the step's
    /// batch is behind the one it trains: 0 when synchronous (then left out of the
    /// JSON line), at most `trainer.async.max_staleness`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub policy_lag: u64,
}

/// What the step's multi-turn episodes did with their tools, and the entropy where the
/// policy reads a tool's result (agentic-RL work reports it spikes there).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolMetrics {
    /// Tool calls per episode.
    pub call_rate: f64,
    /// Fraction of tool calls that failed (an exception, a limit, a sandbox failure).
    pub error_rate: f64,
    /// Seconds spent in tool calls, summed over the step's calls (they run in
    /// parallel, so this can exceed the rollout's wall time).
    pub seconds: f64,
    /// Mean behaviour entropy of the first [`ToolMetrics::AFTER`] policy tokens after
    /// each observation (`None` when no episode saw one).
    pub entropy_after_tool: Option<f64>,
    /// Mean behaviour entropy of every other policy token.
    pub entropy_elsewhere: Option<f64>,
}

impl ToolMetrics {
    /// How many policy tokens after an observation count as "after the tool".
    pub const AFTER: usize = 8;

    /// The sums over `trajectories` that [`ToolMetrics::from_sums`] turns into metrics
    /// (summed across data-parallel ranks first): episodes, calls, errors, seconds,
    /// entropy after tools (sum, count), entropy elsewhere (sum, count).
    pub fn sums(trajectories: &[crate::rollout::Trajectory]) -> [f64; 8] {
        let mut s = [0.0; 8];
        for t in trajectories {
            let Some(episode) = &t.episode else { continue };
            s[0] += 1.0;
            s[1] += episode.tool_calls as f64;
            s[2] += episode.tool_errors as f64;
            s[3] += episode.tool_seconds;
            let Some(entropies) = &t.entropies else {
                continue;
            };
            let mask = t.response_mask();
            let mut after = vec![false; mask.len()];
            for &start in &episode.resumes {
                (start..mask.len())
                    .filter(|&i| mask[i])
                    .take(Self::AFTER)
                    .for_each(|i| after[i] = true);
            }
            for (i, &h) in entropies.iter().enumerate().filter(|&(i, _)| mask[i]) {
                let k = if after[i] { 4 } else { 6 };
                s[k] += f64::from(h);
                s[k + 1] += 1.0;
            }
        }
        s
    }

    /// The metrics of [`ToolMetrics::sums`] (`None` when no trajectory was an episode).
    pub fn from_sums(s: [f64; 8]) -> Option<ToolMetrics> {
        let mean = |sum: f64, n: f64| (n > 0.0).then(|| sum / n);
        (s[0] > 0.0).then(|| ToolMetrics {
            call_rate: s[1] / s[0],
            error_rate: mean(s[2], s[1]).unwrap_or(0.0),
            seconds: s[3],
            entropy_after_tool: mean(s[4], s[5]),
            entropy_elsewhere: mean(s[6], s[7]),
        })
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl StepMetrics {
    /// The one-line human summary.
    pub fn summary(&self) -> String {
        let tools = match &self.tools {
            Some(t) => format!(
                " | tools {:.2}/ep err {:.2} {:.2}s",
                t.call_rate, t.error_rate, t.seconds
            ),
            None => String::new(),
        };
        let mismatch = match (self.rollout_mismatch_kl, self.rollout_ratio_max) {
            (Some(kl), Some(max)) => format!(" | mismatch {kl:.2e} max {max:.2}"),
            _ => String::new(),
        };
        let lag = if self.policy_lag > 0 {
            format!(" | lag {}", self.policy_lag)
        } else {
            String::new()
        };
        format!(
            "step {:>5} | reward {:.3} acc {:.3} | H {:.4} | cov mean {:.2e} p99.9 {:.2e} | sel {:.2e} clip {:.3} kl {:+.2e} | loss {:+.4} gnorm {:.3} lr {:.2e} | len {:.1}/{} trunc {:.2}{tools}{mismatch}{lag} | {:.2}s {:.0} tok/s",
            self.step,
            self.reward_mean,
            self.accuracy,
            self.entropy,
            self.cov.mean,
            self.cov.p999,
            self.selected_frac,
            self.clip_frac,
            self.approx_kl,
            self.loss,
            self.grad_norm,
            self.lr,
            self.response_len_mean,
            self.response_len_max,
            self.truncation_rate,
            self.seconds.total,
            self.tokens_per_s,
        )
    }
}

/// A run's `metrics.jsonl`: appends [`StepMetrics`] as JSON lines, flushed after every
/// step; [`MetricsFile::truncate_after`] and [`read_metrics`] are its other two uses.
pub struct MetricsFile {
    path: PathBuf,
    out: BufWriter<File>,
}

impl MetricsFile {
    /// Opens (creating or appending to) `path`.
    pub fn open(path: &Path) -> std::io::Result<MetricsFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(MetricsFile {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    /// Writes one step's line.
    pub fn write(&mut self, m: &StepMetrics) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, m)?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Drops the lines of steps after `step` (a resumed run redoes them), rewriting the
    /// file atomically; a missing file is left missing.
    pub fn truncate_after(path: &Path, step: u64) -> std::io::Result<()> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let keep: String = text
            .lines()
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v["step"].as_u64())
                    .is_some_and(|s| s <= step)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let tmp = path.with_extension("jsonl.tmp");
        std::fs::write(&tmp, keep)?;
        std::fs::rename(&tmp, path)
    }
}

/// Reads a metrics file back (for reports and tests); a bad line names its number.
pub fn read_metrics(path: &Path) -> Result<Vec<StepMetrics>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}
