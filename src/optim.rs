//! AdamW with global grad-norm clipping and a learning-rate schedule, written over
//! `tch` tensors so that its state (moments, step count) can be saved and restored
//! exactly (tch's built-in optimizers do not expose their state), which resumable
//! checkpoints need.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// The learning-rate schedule after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LrSchedule {
    /// Constant learning rate (verl's default; the paper's runs).
    #[default]
    Constant,
    /// Cosine decay from `lr` to `lr * min_lr_ratio` at the last step.
    Cosine,
}

/// Optimizer settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Adam beta1.
    pub beta1: f64,
    /// Adam beta2.
    pub beta2: f64,
    /// Adam epsilon.
    pub eps: f64,
    /// Decoupled weight decay (AdamW).
    pub weight_decay: f64,
    /// Global gradient-norm clipping threshold (`None`: no clipping).
    pub grad_clip: Option<f64>,
    /// Linear warm-up over this many optimizer steps.
    pub warmup_steps: usize,
    /// Schedule after warm-up.
    pub schedule: LrSchedule,
    /// Final learning rate of the cosine schedule, as a fraction of `lr`.
    pub min_lr_ratio: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            lr: 1e-6,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            grad_clip: Some(1.0),
            warmup_steps: 0,
            schedule: LrSchedule::Constant,
            min_lr_ratio: 0.0,
        }
    }
}

impl OptimConfig {
    /// The learning rate of optimizer step `step` (0-based) out of `total` steps.
    pub fn lr_at(&self, step: usize, total: usize) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match self.schedule {
            LrSchedule::Constant => self.lr,
            LrSchedule::Cosine => {
                let span = total.saturating_sub(self.warmup_steps).max(1) as f64;
                let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
                let min = self.lr * self.min_lr_ratio;
                min + (self.lr - min) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

/// AdamW over a fixed, named list of parameters.
pub struct AdamW {
    names: Vec<String>,
    params: Vec<Tensor>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Number of optimizer steps taken.
    pub step: u64,
    cfg: OptimConfig,
}

impl AdamW {
    /// A fresh optimizer over the trainable variables of `vars` (sorted by name, so
    /// the state layout does not depend on hash-map order).
    pub fn new(vars: &tch::nn::VarStore, cfg: OptimConfig) -> AdamW {
        let mut params: Vec<(String, Tensor)> = vars
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let (names, params): (Vec<String>, Vec<Tensor>) = params.into_iter().unzip();
        let m = params.iter().map(Tensor::zeros_like).collect();
        let v = params.iter().map(Tensor::zeros_like).collect();
        AdamW {
            names,
            params,
            m,
            v,
            step: 0,
            cfg,
        }
    }

    /// Clears the gradients of all parameters.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    /// Global L2 norm of the gradients; with `grad_clip` set, scales them down so the
    /// norm is at most the threshold. Returns the norm before clipping.
    pub fn clip_grad_norm(&mut self) -> f64 {
        let _guard = tch::no_grad_guard();
        let mut sq = 0.0;
        for p in &self.params {
            let g = p.grad();
            if g.defined() {
                sq += g.pow_tensor_scalar(2).sum(Kind::Double).double_value(&[]);
            }
        }
        let norm = sq.sqrt();
        if let Some(max) = self.cfg.grad_clip
            && norm.is_finite()
            && norm > max
        {
            let scale = max / (norm + 1e-6);
            for p in &self.params {
                let mut g = p.grad();
                if g.defined() {
                    let _ = g.g_mul_scalar_(scale);
                }
            }
        }
        norm
    }

    /// One AdamW step at learning rate `lr` (PyTorch's update: decoupled decay, then
    /// bias-corrected Adam).
    pub fn step(&mut self, lr: f64) {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let bc1 = 1.0 - b1.powi(t);
        let bc2 = 1.0 - b2.powi(t);
        for ((p, m), v) in self.params.iter_mut().zip(&mut self.m).zip(&mut self.v) {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            let _ = p.g_mul_scalar_(1.0 - lr * self.cfg.weight_decay);
            let _ = m.g_mul_scalar_(b1);
            let _ = m.g_add_(&(&g * (1.0 - b1)));
            let _ = v.g_mul_scalar_(b2);
            let _ = v.g_add_(&(&g * &g * (1.0 - b2)));
            let denom = (&*v / bc2).sqrt() + self.cfg.eps;
            let _ = p.g_sub_(&((&*m / &denom) * (lr / bc1)));
        }
    }

    /// The moments, named `m.<param>` / `v.<param>`, for checkpoints.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.m.len());
        for ((name, m), v) in self.names.iter().zip(&self.m).zip(&self.v) {
            out.push((format!("m.{name}"), m.shallow_clone()));
            out.push((format!("v.{name}"), v.shallow_clone()));
        }
        out
    }

    /// The configuration in use.
    pub fn config(&self) -> &OptimConfig {
        &self.cfg
    }

    /// Restores moments saved by [`AdamW::state_tensors`] and the step count.
    pub fn load_state(&mut self, tensors: &[(String, Tensor)], step: u64) -> Result<(), String> {
        let _guard = tch::no_grad_guard();
        for ((pname, m), v) in self.names.iter().zip(&mut self.m).zip(&mut self.v) {
            for (name, dst) in [(format!("m.{pname}"), m), (format!("v.{pname}"), v)] {
                let src = tensors
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, t)| t)
                    .ok_or_else(|| format!("optimizer state lacks `{name}`"))?;
                if src.size() != dst.size() {
                    return Err(format!(
                        "optimizer state `{name}` has shape {:?}, expected {:?}",
                        src.size(),
                        dst.size()
                    ));
                }
                dst.copy_(src);
            }
        }
        self.step = step;
        Ok(())
    }
}
