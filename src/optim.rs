//! AdamW with global grad-norm clipping and a learning-rate schedule, written over
//! `tch` tensors so that its state (moments, step count) can be saved and restored
//! exactly (tch's built-in optimizers do not expose their state), which resumable
//! checkpoints need. [`Precision`] selects f32, bf16 or bf16-mixed training; in
//! bf16-mixed the optimizer owns the f32 master weights.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// The trainable variables of `vars`, sorted by name.
fn trainable(vars: &tch::nn::VarStore) -> (Vec<String>, Vec<Tensor>) {
    let mut params: Vec<(String, Tensor)> = vars
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    params.into_iter().unzip()
}

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

/// The numeric precision of training (`trainer.precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// f32 weights, activations, gradients and moments.
    #[default]
    F32,
    /// bf16 everywhere: weights, activations, gradients and AdamW moments (the
    /// log-softmax and the loss still run in f32). Updates below bf16's resolution
    /// are lost.
    Bf16,
    /// bf16 weights and activations in forward, backward and rollout; f32 master
    /// weights (what checkpoints keep), f32 gradient accumulation and f32 AdamW moments.
    Bf16Mixed,
}

impl Precision {
    /// The dtype the model computes in.
    pub fn compute_kind(self) -> Kind {
        match self {
            Precision::F32 => Kind::Float,
            Precision::Bf16 | Precision::Bf16Mixed => Kind::BFloat16,
        }
    }
}

/// Casts every floating-point variable of `vars` to `kind` in place: every module
/// holding one of them (a shallow clone) sees the new dtype.
pub fn cast_variables(vars: &tch::nn::VarStore, kind: Kind) {
    let _no_grad = tch::no_grad_guard();
    for (_, mut v) in vars.variables() {
        if v.is_floating_point() && v.kind() != kind {
            v.set_data(&v.to_kind(kind));
        }
    }
}

/// AdamW over a fixed, named list of parameters.
pub struct AdamW {
    names: Vec<String>,
    params: Vec<Tensor>,
    /// bf16-mixed: the f32 master copy of each parameter and its f32 gradient sum.
    masters: Option<Masters>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Number of optimizer steps taken.
    pub step: u64,
    cfg: OptimConfig,
}

/// f32 master weights and gradient accumulators of bf16-mixed training.
struct Masters {
    weights: Vec<Tensor>,
    grads: Vec<Tensor>,
}

impl AdamW {
    /// A fresh optimizer over the trainable variables of `vars` (sorted by name, so
    /// the state layout does not depend on hash-map order), which must already be in
    /// the dtype they train in; moments take that dtype.
    pub fn new(vars: &tch::nn::VarStore, cfg: OptimConfig) -> AdamW {
        let (names, params) = trainable(vars);
        let m = params.iter().map(Tensor::zeros_like).collect();
        let v = params.iter().map(Tensor::zeros_like).collect();
        AdamW {
            names,
            params,
            masters: None,
            m,
            v,
            step: 0,
            cfg,
        }
    }

    /// A bf16-mixed optimizer: f32 master copies of the trainable variables of `vars`
    /// (taken now, so call it before casting the model to bf16), f32 moments and f32
    /// gradient accumulators ([`AdamW::accumulate_grads`]). Each step updates the
    /// masters and copies them into the parameters, rounding to their dtype.
    pub fn with_f32_masters(vars: &tch::nn::VarStore, cfg: OptimConfig) -> AdamW {
        let (names, params) = trainable(vars);
        let weights: Vec<Tensor> = params
            .iter()
            .map(|p| p.detach().to_kind(Kind::Float).copy())
            .collect();
        let zeros = || weights.iter().map(Tensor::zeros_like).collect::<Vec<_>>();
        let (m, v, grads) = (zeros(), zeros(), zeros());
        AdamW {
            names,
            params,
            masters: Some(Masters { weights, grads }),
            m,
            v,
            step: 0,
            cfg,
        }
    }

    /// bf16-mixed: adds the parameters' gradients (in their dtype, from one backward)
    /// to the f32 accumulators and clears them, so that micro-batches sum in f32.
    /// Call after every backward; does nothing otherwise.
    pub fn accumulate_grads(&mut self) {
        let Some(masters) = &mut self.masters else {
            return;
        };
        let _no_grad = tch::no_grad_guard();
        for (p, acc) in self.params.iter().zip(&mut masters.grads) {
            let mut g = p.grad();
            if g.defined() {
                let _ = acc.g_add_(&g.to_kind(Kind::Float));
                let _ = g.detach_().zero_();
            }
        }
    }

    /// The gradient each update uses: the f32 accumulator (bf16-mixed) or the
    /// parameter's own (undefined when no backward reached it).
    fn grads(&self) -> Vec<Tensor> {
        match &self.masters {
            Some(masters) => masters.grads.iter().map(Tensor::shallow_clone).collect(),
            None => self.params.iter().map(Tensor::grad).collect(),
        }
    }

    /// The gradients the next step applies (the f32 sums in bf16-mixed training), as
    /// handles that write through: data-parallel training sums them across ranks in
    /// place. A parameter no backward reached gets a zero gradient first, so every
    /// rank hands over the same tensors.
    pub fn gradients(&mut self) -> Vec<Tensor> {
        if self.masters.is_none() {
            for p in &self.params {
                if !p.grad().defined() {
                    (p.sum(Kind::Float) * 0.0).backward();
                }
            }
        }
        self.grads()
    }

    /// Clears the gradients of all parameters (and the f32 accumulators).
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
        if let Some(masters) = &mut self.masters {
            for g in &mut masters.grads {
                let _ = g.zero_();
            }
        }
    }

    /// bf16-mixed: the f32 master weights by parameter name (what checkpoints store
    /// instead of the rounded parameters); `None` otherwise.
    pub fn master_weights(&self) -> Option<Vec<(String, Tensor)>> {
        let masters = self.masters.as_ref()?;
        Some(
            self.names
                .iter()
                .cloned()
                .zip(masters.weights.iter().map(Tensor::shallow_clone))
                .collect(),
        )
    }

    /// bf16-mixed: sets each master weight from `tensors` (by name; a checkpoint's
    /// model tensors) and copies it into the parameter. Does nothing otherwise.
    pub fn load_master_weights(&mut self, tensors: &[(String, Tensor)]) -> Result<(), String> {
        let Some(masters) = &mut self.masters else {
            return Ok(());
        };
        let _no_grad = tch::no_grad_guard();
        for ((name, p), w) in self
            .names
            .iter()
            .zip(&mut self.params)
            .zip(&mut masters.weights)
        {
            let src = tensors
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t)
                .ok_or_else(|| format!("checkpoint lacks master weight `{name}`"))?;
            if src.size() != w.size() {
                return Err(format!(
                    "master weight `{name}` has shape {:?}, expected {:?}",
                    src.size(),
                    w.size()
                ));
            }
            w.copy_(src);
            p.copy_(w);
        }
        Ok(())
    }

    /// Global L2 norm of the gradients; with `grad_clip` set, scales them down so the
    /// norm is at most the threshold. Returns the norm before clipping.
    pub fn clip_grad_norm(&mut self) -> f64 {
        let _guard = tch::no_grad_guard();
        let grads = self.grads();
        let mut sq = 0.0;
        for g in grads.iter().filter(|g| g.defined()) {
            sq += g.pow_tensor_scalar(2).sum(Kind::Double).double_value(&[]);
        }
        let norm = sq.sqrt();
        if let Some(max) = self.cfg.grad_clip
            && norm.is_finite()
            && norm > max
        {
            let scale = max / (norm + 1e-6);
            for mut g in grads.into_iter().filter(Tensor::defined) {
                let _ = g.g_mul_scalar_(scale);
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
        let grads = self.grads();
        for (i, g) in grads.iter().enumerate() {
            if !g.defined() {
                continue;
            }
            let (m, v) = (&mut self.m[i], &mut self.v[i]);
            let mut w = match &self.masters {
                Some(masters) => masters.weights[i].shallow_clone(),
                None => self.params[i].shallow_clone(),
            };
            let _ = w.g_mul_scalar_(1.0 - lr * self.cfg.weight_decay);
            let _ = m.g_mul_scalar_(b1);
            let _ = m.g_add_(&(g * (1.0 - b1)));
            let _ = v.g_mul_scalar_(b2);
            let _ = v.g_add_(&(g * g * (1.0 - b2)));
            let denom = (&*v / bc2).sqrt() + self.cfg.eps;
            let _ = w.g_sub_(&((&*m / &denom) * (lr / bc1)));
            if self.masters.is_some() {
                self.params[i].copy_(&w);
            }
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
