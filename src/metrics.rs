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
}

impl StepMetrics {
    /// The one-line human summary.
    pub fn summary(&self) -> String {
        format!(
            "step {:>5} | reward {:.3} acc {:.3} | H {:.4} | cov mean {:.2e} p99.9 {:.2e} | sel {:.2e} clip {:.3} kl {:+.2e} | loss {:+.4} gnorm {:.3} lr {:.2e} | len {:.1}/{} trunc {:.2} | {:.2}s {:.0} tok/s",
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

/// Appends [`StepMetrics`] as JSON lines, flushed after every step.
pub struct MetricsWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl MetricsWriter {
    /// Opens (creating or appending to) `path`.
    pub fn open(path: &Path) -> std::io::Result<MetricsWriter> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(MetricsWriter {
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
