//! One public entry point for comparing Cove's loss with another implementation:
//! given `logp`, `old_logp`, `advantages` and `mask` (`[B, T]`), compute the per-token
//! loss, the selected-token mask, the aggregated loss, its gradient with respect to
//! `logp`, and the metrics. `cove loss` exposes it on the command line for JSON or
//! safetensors files.

use super::{CovStats, LossConfig, TokenTensors, cov_stats, single_batch_loss};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// The inputs, as nested rows (`[B][T]`), in the JSON form `cove loss` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossInputs {
    /// Current-policy log-probabilities.
    pub logp: Vec<Vec<f64>>,
    /// Old-policy log-probabilities.
    pub old_logp: Vec<Vec<f64>>,
    /// Per-token advantages.
    pub advantages: Vec<Vec<f64>>,
    /// 1 for valid tokens, 0 for padding.
    pub mask: Vec<Vec<f64>>,
}

/// What the loss computed, as plain data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossReport {
    /// Aggregated scalar loss.
    pub loss: f64,
    /// Per-token loss before aggregation (0 at padding).
    pub token_loss: Vec<Vec<f64>>,
    /// `d loss / d logp`.
    pub grad_logp: Vec<Vec<f64>>,
    /// Tokens chosen by the entropy control.
    pub selected: Vec<Vec<bool>>,
    /// Fraction of valid tokens whose PPO clipped term is active.
    pub clip_frac: f64,
    /// Fraction of valid tokens selected by the entropy control.
    pub selected_frac: f64,
    /// Mean of `old_logp - logp` over valid tokens.
    pub approx_kl: f64,
    /// Covariance statistics (bound: Clip-Cov's `lb`, else 1).
    pub cov: CovStats,
}

/// Errors reading or checking comparison inputs.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The JSON is malformed.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: String,
        /// The cause (with line and column).
        source: serde_json::Error,
    },
    /// The safetensors file is unreadable or lacks a tensor.
    #[error("{path}: {why}")]
    Safetensors {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// A field has the wrong shape or a non-finite value.
    #[error("field `{field}`: {why}")]
    Shape {
        /// The offending field.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
    /// The control configuration is invalid.
    #[error(transparent)]
    Control(#[from] super::control::ControlError),
}

impl LossInputs {
    /// Reads inputs from a `.json` file (this struct) or a `.safetensors` file with
    /// tensors named `logp`, `old_logp`, `advantages`, `mask`.
    pub fn read(path: &Path) -> Result<LossInputs, CompareError> {
        let p = path.display().to_string();
        if path.extension().is_some_and(|e| e == "safetensors") {
            let tensors =
                Tensor::read_safetensors(path).map_err(|e| CompareError::Safetensors {
                    path: p.clone(),
                    why: e.to_string(),
                })?;
            let get = |name: &str| -> Result<Vec<Vec<f64>>, CompareError> {
                let t = tensors
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, t)| t)
                    .ok_or_else(|| CompareError::Safetensors {
                        path: p.clone(),
                        why: format!("no tensor named `{name}`"),
                    })?;
                if t.dim() != 2 {
                    return Err(CompareError::Safetensors {
                        path: p.clone(),
                        why: format!("tensor `{name}` has shape {:?}, expected [B, T]", t.size()),
                    });
                }
                Vec::<Vec<f64>>::try_from(t.to_kind(Kind::Double)).map_err(|e| {
                    CompareError::Safetensors {
                        path: p.clone(),
                        why: e.to_string(),
                    }
                })
            };
            Ok(LossInputs {
                logp: get("logp")?,
                old_logp: get("old_logp")?,
                advantages: get("advantages")?,
                mask: get("mask")?,
            })
        } else {
            let text = std::fs::read_to_string(path).map_err(|source| CompareError::Io {
                path: p.clone(),
                source,
            })?;
            serde_json::from_str(&text).map_err(|source| CompareError::Json { path: p, source })
        }
    }

    fn check(&self) -> Result<(usize, usize), CompareError> {
        let b = self.logp.len();
        let t = self.logp.first().map_or(0, Vec::len);
        for (field, rows) in [
            ("logp", &self.logp),
            ("old_logp", &self.old_logp),
            ("advantages", &self.advantages),
            ("mask", &self.mask),
        ] {
            if rows.len() != b {
                return Err(CompareError::Shape {
                    field,
                    why: format!("{} rows, expected {b}", rows.len()),
                });
            }
            for (i, r) in rows.iter().enumerate() {
                if r.len() != t {
                    return Err(CompareError::Shape {
                        field,
                        why: format!("row {i} has {} values, expected {t}", r.len()),
                    });
                }
                if field != "mask"
                    && let Some(j) = r
                        .iter()
                        .zip(&self.mask[i])
                        .position(|(v, m)| *m != 0.0 && !v.is_finite())
                {
                    return Err(CompareError::Shape {
                        field,
                        why: format!("row {i} column {j} is not finite"),
                    });
                }
            }
        }
        Ok((b, t))
    }
}

fn tensor(rows: &[Vec<f64>], b: usize, t: usize) -> Tensor {
    let flat: Vec<f64> = rows.iter().flatten().copied().collect();
    Tensor::from_slice(&flat).view([b as i64, t as i64])
}

fn rows_f64(x: &Tensor) -> Vec<Vec<f64>> {
    Vec::<Vec<f64>>::try_from(x.to_kind(Kind::Double).to_device(Device::Cpu))
        .expect("a [B, T] double tensor converts to rows")
}

/// Computes Cove's loss on `inputs` (float64, CPU) as one mini-batch with `cfg`;
/// `seed` keys Clip-Cov's random choice.
pub fn compute_loss(
    inputs: &LossInputs,
    cfg: &LossConfig,
    seed: u64,
) -> Result<LossReport, CompareError> {
    let (b, t) = inputs.check()?;
    let control = cfg.control.build()?;
    let logp = tensor(&inputs.logp, b, t).set_requires_grad(true);
    let old = tensor(&inputs.old_logp, b, t);
    let adv = tensor(&inputs.advantages, b, t);
    let valid = tensor(&inputs.mask, b, t).ne(0.0);
    let tokens = TokenTensors {
        logp: &logp,
        old_logp: &old,
        adv: &adv,
        valid: &valid,
    };
    let micro = single_batch_loss(cfg, control.as_ref(), &tokens, None, seed);
    micro.loss.backward();
    let n = micro.sums.tokens.max(1.0);
    let lb = match cfg.control {
        super::ControlConfig::ClipCov { lb, .. } => lb,
        _ => 1.0,
    };
    let selected = rows_f64(&micro.selected.to_kind(Kind::Double))
        .into_iter()
        .map(|r| r.into_iter().map(|v| v != 0.0).collect())
        .collect();
    Ok(LossReport {
        loss: micro.loss.double_value(&[]),
        token_loss: rows_f64(&micro.token_loss.detach()),
        grad_logp: rows_f64(&logp.grad()),
        selected,
        clip_frac: micro.sums.clipped / n,
        selected_frac: micro.sums.selected / n,
        approx_kl: micro.sums.approx_kl / n,
        cov: cov_stats(&logp.detach(), &adv, &valid, lb),
    })
}
