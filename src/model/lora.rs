//! LoRA adapters in PEFT's layout: configuration ([`LoraConfig`], the `[model.lora]`
//! section), the adapted linear layer, the training switch of the adapters' dropout
//! ([`TrainSwitch`]), PEFT's `adapter_config.json`, and merging an adapter into its base
//! model ([`merge_checkpoint`], behind `cove merge-lora`).
//!
//! An adapted projection computes `y = x Wᵀ + b + (alpha / rank) · dropout(x) Aᵀ Bᵀ`
//! (PEFT's `lora_B(lora_A(dropout(x))) * scaling`), with A `[rank, in]` drawn as PEFT
//! draws it (kaiming-uniform with `a = √5`, i.e. U(±1/√in), seeded) and B `[out, rank]`
//! zero, so the first forward equals the base model's. Attaching adapters
//! ([`crate::model::CausalLm::attach_lora`]) freezes every base weight, so the optimizer,
//! which takes the trainable variables, holds only the adapters.
//!
//! Adapter variables carry PEFT's saved names
//! (`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`), so an adapter is
//! written to `adapter_model.safetensors` without renaming and PEFT's
//! `PeftModel.from_pretrained(base, folder)` loads it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tch::{Kind, Tensor, nn};

use super::named::{ModelSource, resolve};
use super::{CausalLm, Dtype, ModelError, Policy};

/// The prefix PEFT gives every saved adapter key (`base_model.model.` + the module path).
pub const PEFT_PREFIX: &str = "base_model.model.";

/// PEFT's adapter configuration file.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";

/// PEFT's adapter weights file.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";

/// The projections adapted by default (PEFT's module names): every attention and MLP
/// projection of a Qwen2 / Llama decoder layer.
pub const DEFAULT_TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// The `[model.lora]` section: LoRA on the listed projections. Defaults follow PEFT's
/// `LoraConfig` (`r = 8`, `lora_alpha = 8`, `lora_dropout = 0`), with every projection
/// as target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraConfig {
    /// Adapter rank `r` (at least 1).
    pub rank: i64,
    /// `lora_alpha`: the update is scaled by `alpha / rank`.
    pub alpha: f64,
    /// Dropout probability on the adapter's input, in `[0, 1)`; active only in the
    /// training forward.
    pub dropout: f64,
    /// Module names to adapt, matched against the last component of each projection's
    /// name (PEFT's `target_modules`): any of [`DEFAULT_TARGETS`].
    pub targets: Vec<String>,
    /// Seed of the A matrices' initialisation.
    pub seed: u64,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            rank: 8,
            alpha: 8.0,
            dropout: 0.0,
            targets: DEFAULT_TARGETS.iter().map(|s| s.to_string()).collect(),
            seed: 0,
        }
    }
}

/// Errors of LoRA configuration, adapter files and merging; each names its field or
/// file.
#[derive(Debug, thiserror::Error)]
pub enum LoraError {
    /// A `[model.lora]` field is invalid.
    #[error("model.lora.{field}: {why}")]
    Field {
        /// The field (`rank`, `alpha`, `dropout`, `targets`).
        field: &'static str,
        /// What is wrong.
        why: String,
    },
    /// An adapter folder or file is missing, malformed or unsupported.
    #[error("{path}: {why}")]
    Adapter {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Loading or saving the base model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl LoraConfig {
    /// Whether `other` describes the same adapters (rank, alpha, dropout and the same
    /// set of targets): what a LoRA checkpoint needs to resume into a model.
    pub fn same_adapter(&self, other: &LoraConfig) -> bool {
        let sorted = |t: &[String]| {
            let mut t = t.to_vec();
            t.sort();
            t
        };
        (self.rank, self.alpha, self.dropout) == (other.rank, other.alpha, other.dropout)
            && sorted(&self.targets) == sorted(&other.targets)
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), LoraError> {
        let bad = |field, why: String| Err(LoraError::Field { field, why });
        if self.rank < 1 {
            return bad("rank", format!("must be at least 1, got {}", self.rank));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return bad("alpha", format!("must be positive, got {}", self.alpha));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(
                "dropout",
                format!("must lie in [0, 1), got {}", self.dropout),
            );
        }
        if self.targets.is_empty() {
            return bad("targets", "is empty (list the projections to adapt)".into());
        }
        if let Some(t) = self
            .targets
            .iter()
            .find(|t| !DEFAULT_TARGETS.contains(&t.as_str()))
        {
            return bad(
                "targets",
                format!("`{t}` is not a projection ({})", DEFAULT_TARGETS.join(", ")),
            );
        }
        Ok(())
    }

    /// The update's scale `alpha / rank`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// Whether the module named `module` (dotted, e.g. `model.layers.0.mlp.up_proj`)
    /// is adapted.
    pub fn targets_module(&self, module: &str) -> bool {
        let last = module.rsplit('.').next().unwrap_or(module);
        self.targets.iter().any(|t| t == last)
    }

    /// PEFT's `adapter_config.json` for this configuration on base model
    /// `base_model` (its name or folder).
    pub fn peft_config(&self, base_model: &str) -> Value {
        json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model,
            "r": self.rank,
            "lora_alpha": self.alpha,
            "lora_dropout": self.dropout,
            "target_modules": self.targets,
            "bias": "none",
            "fan_in_fan_out": false,
            "use_rslora": false,
            "use_dora": false,
            "init_lora_weights": true,
            "inference_mode": true,
            "modules_to_save": null,
            "layers_to_transform": null,
            "rank_pattern": {},
            "alpha_pattern": {},
            "revision": null,
        })
    }

    /// Reads a PEFT `adapter_config.json`: the configuration and the base model's name
    /// or folder. Refuses what Cove's adapter does not compute (rsLoRA, DoRA, biases,
    /// per-module ranks, `fan_in_fan_out`).
    pub fn from_peft_file(path: &Path) -> Result<(LoraConfig, Option<String>), LoraError> {
        let bad = |why: String| LoraError::Adapter {
            path: path.to_path_buf(),
            why,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if v["peft_type"] != "LORA" {
            return Err(bad(format!(
                "field `peft_type`: {} is not \"LORA\"",
                v["peft_type"]
            )));
        }
        for (field, ok) in [
            ("use_rslora", v["use_rslora"] != true),
            ("use_dora", v["use_dora"] != true),
            ("fan_in_fan_out", v["fan_in_fan_out"] != true),
            ("bias", v["bias"].is_null() || v["bias"] == "none"),
            (
                "rank_pattern",
                v["rank_pattern"].as_object().is_none_or(|m| m.is_empty()),
            ),
            (
                "alpha_pattern",
                v["alpha_pattern"].as_object().is_none_or(|m| m.is_empty()),
            ),
        ] {
            if !ok {
                return Err(bad(format!(
                    "field `{field}`: {} is not supported",
                    v[field]
                )));
            }
        }
        let rank = v["r"]
            .as_i64()
            .ok_or_else(|| bad("field `r`: missing or not an integer".into()))?;
        let alpha = v["lora_alpha"]
            .as_f64()
            .ok_or_else(|| bad("field `lora_alpha`: missing or not a number".into()))?;
        let targets = match &v["target_modules"] {
            Value::Array(a) => a
                .iter()
                .map(|t| t.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("field `target_modules`: not a list of names".into()))?,
            other => {
                return Err(bad(format!(
                    "field `target_modules`: {other} is not a list of names"
                )));
            }
        };
        let config = LoraConfig {
            rank,
            alpha,
            dropout: v["lora_dropout"].as_f64().unwrap_or(0.0),
            targets,
            seed: 0,
        };
        config.validate().map_err(|e| bad(e.to_string()))?;
        let base = v["base_model_name_or_path"].as_str().map(str::to_string);
        Ok((config, base))
    }
}

/// The adapters attached to a model: their configuration and the base model they were
/// trained on (written as `base_model_name_or_path`).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraInfo {
    /// The configuration.
    pub config: LoraConfig,
    /// The base model's name or folder.
    pub base_model: String,
}

impl LoraInfo {
    /// PEFT's `adapter_config.json` contents.
    pub fn peft_config(&self) -> Value {
        self.config.peft_config(&self.base_model)
    }
}

/// The on/off switch of the training forward, shared by a model and its adapters:
/// adapter dropout is active only while it is on. Cloning shares the switch.
#[derive(Debug, Clone, Default)]
pub struct TrainSwitch(Arc<AtomicBool>);

impl TrainSwitch {
    /// Turns the training forward on or off.
    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::SeqCst);
    }

    /// Whether the training forward is on.
    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Turns it on until the returned guard drops (also on an early return).
    pub fn on(&self) -> TrainGuard {
        self.set(true);
        TrainGuard(self.clone())
    }
}

/// Keeps a [`TrainSwitch`] on while alive; see [`TrainSwitch::on`].
#[derive(Debug)]
pub struct TrainGuard(TrainSwitch);

impl Drop for TrainGuard {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// Runs a model's adapters merged into their weights while alive
/// ([`CausalLm::set_adapters_merged`]): `W + scale · B A` is computed once per
/// projection, the base weights stay untouched, and dropping the guard (also on an
/// early return) goes back to the adapters. Rollout decodes under it.
pub struct MergedAdapters<'a>(&'a dyn CausalLm);

impl<'a> MergedAdapters<'a> {
    /// Merges `model`'s adapters (nothing happens without adapters).
    pub fn new(model: &'a dyn CausalLm) -> Self {
        model.set_adapters_merged(true);
        MergedAdapters(model)
    }
}

impl Drop for MergedAdapters<'_> {
    fn drop(&mut self) {
        self.0.set_adapters_merged(false);
    }
}

/// Runs a model with its adapters switched off while alive
/// ([`CausalLm::set_adapters_off`]): every adapted projection computes with its base
/// weight alone (shared, not copied), so the model is its frozen base; dropping the
/// guard (also on an early return) turns the adapters back on. The `ref_kl` reference of
/// a LoRA run is computed under it.
pub struct AdaptersOff<'a>(&'a dyn CausalLm);

impl<'a> AdaptersOff<'a> {
    /// Switches `model`'s adapters off (nothing happens without adapters).
    pub fn new(model: &'a dyn CausalLm) -> Self {
        model.set_adapters_off(true);
        AdaptersOff(model)
    }
}

impl Drop for AdaptersOff<'_> {
    fn drop(&mut self) {
        self.0.set_adapters_off(false);
    }
}

/// One projection's adapter: A `[rank, in]`, B `[out, rank]`.
#[derive(Debug)]
pub(crate) struct Adapter {
    a: Tensor,
    b: Tensor,
    scale: f64,
    dropout: f64,
    train: TrainSwitch,
    /// The weight the projection computes with instead of base + adapter: `W + scale ·
    /// B A` while merged for rollout, `W` itself while the adapters are off.
    merged: std::sync::Mutex<Option<Tensor>>,
}

impl Adapter {
    /// Registers `…lora_A.weight` and `…lora_B.weight` of module `module` (its dotted
    /// Hugging Face name) under PEFT's prefix in `root`'s var store, trainable.
    pub(crate) fn new(
        root: &nn::Path,
        module: &str,
        (in_dim, out_dim): (i64, i64),
        config: &LoraConfig,
        train: &TrainSwitch,
        rng: &mut ChaCha8Rng,
    ) -> Result<Adapter, ModelError> {
        let mut p = root / "base_model" / "model";
        for part in module.split('.') {
            p = &p / part;
        }
        let bound = 1.0 / (in_dim as f64).sqrt();
        let values: Vec<f32> = (0..config.rank * in_dim)
            .map(|_| rng.random_range(-bound..bound) as f32)
            .collect();
        let a = Tensor::from_slice(&values)
            .f_view([config.rank, in_dim])?
            .f_to_kind(p.kind())?
            .f_to_device(p.device())?;
        let a = (&p / "lora_A").add("weight", a, true);
        let b = Tensor::f_zeros([out_dim, config.rank], (p.kind(), p.device()))?;
        let b = (&p / "lora_B").add("weight", b, true);
        Ok(Adapter {
            a,
            b,
            scale: config.scale(),
            dropout: config.dropout,
            train: train.clone(),
            merged: std::sync::Mutex::new(None),
        })
    }

    /// Computes `W + scale · B A` (no grad) for the following forwards, or drops it.
    pub(crate) fn set_merged(&self, weight: &Tensor, on: bool) {
        let merged = on.then(|| {
            let _guard = tch::no_grad_guard();
            weight + self.b.matmul(&self.a) * self.scale
        });
        *self.merged.lock().unwrap_or_else(|p| p.into_inner()) = merged;
    }

    /// Computes with the base weight `weight` alone while `on` (shared, not copied).
    pub(crate) fn set_off(&self, weight: &Tensor, on: bool) {
        *self.merged.lock().unwrap_or_else(|p| p.into_inner()) = on.then(|| weight.shallow_clone());
    }

    /// `x Wᵀ + b + scale · dropout(x) Aᵀ Bᵀ` (or `x (W + scale · B A)ᵀ + b` while
    /// merged, `x Wᵀ + b` while off).
    pub(crate) fn forward(&self, x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
        if let Some(w) = &*self.merged.lock().unwrap_or_else(|p| p.into_inner()) {
            return x.linear(w, bias);
        }
        let base = x.linear(weight, bias);
        let x = if self.dropout > 0.0 && self.train.is_on() {
            x.dropout(self.dropout, true)
        } else {
            x.shallow_clone()
        };
        let none = None::<&Tensor>;
        base + x.linear(&self.a, none).linear(&self.b, none) * self.scale
    }
}

/// A seeded generator for the A matrices of `config`.
pub(crate) fn init_rng(config: &LoraConfig) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(config.seed)
}

/// Adds `scale · B A` of every adapter in `adapter` (PEFT keys) to the matching weight
/// of `base` (Hugging Face names), in place: the merged model computes the adapted
/// one's function without adapters. `path` names the adapter file in errors.
pub fn merge_into(
    base: &[(String, Tensor)],
    adapter: &[(String, Tensor)],
    config: &LoraConfig,
    path: &Path,
) -> Result<usize, LoraError> {
    let _guard = tch::no_grad_guard();
    let bad = |why: String| LoraError::Adapter {
        path: path.to_path_buf(),
        why,
    };
    let find = |list: &[(String, Tensor)], name: &str| {
        list.iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.shallow_clone())
    };
    let mut merged = 0;
    for (key, a) in adapter {
        let Some(module) = key
            .strip_prefix(PEFT_PREFIX)
            .and_then(|k| k.strip_suffix(".lora_A.weight"))
        else {
            if key.ends_with(".lora_B.weight") {
                continue;
            }
            return Err(bad(format!("tensor `{key}` is not a LoRA A or B weight")));
        };
        let b_key = format!("{PEFT_PREFIX}{module}.lora_B.weight");
        let b = find(adapter, &b_key).ok_or_else(|| bad(format!("no tensor `{b_key}`")))?;
        let w = find(base, &format!("{module}.weight"))
            .ok_or_else(|| bad(format!("`{key}`: the base model has no `{module}.weight`")))?;
        let (ws, (asz, bsz)) = (w.size(), (a.size(), b.size()));
        if asz.len() != 2 || bsz.len() != 2 || bsz[1] != asz[0] || [bsz[0], asz[1]] != ws[..] {
            return Err(bad(format!(
                "`{module}`: A {asz:?} and B {bsz:?} do not fit the weight {ws:?}"
            )));
        }
        let delta = b
            .to_kind(Kind::Float)
            .matmul(&a.to_kind(Kind::Float).to_device(b.device()))
            * config.scale();
        let sum = w.to_kind(Kind::Float) + delta.to_device(w.device());
        w.shallow_clone().copy_(&sum.to_kind(w.kind()));
        merged += 1;
    }
    Ok(merged)
}

/// `cove merge-lora`: loads the base model named by the checkpoint's
/// `adapter_config.json` (`base_model_name_or_path`; `base` overrides it: a named model
/// or a Hugging Face folder), adds the adapter of `checkpoint` to its weights and
/// writes the merged model as a Hugging Face folder `out` (config.json,
/// model.safetensors, tokenizer files), atomically. Returns what it did, for printing.
pub fn merge_checkpoint(
    checkpoint: &Path,
    base: Option<&str>,
    out: &Path,
) -> Result<String, LoraError> {
    let config_path = checkpoint.join(ADAPTER_CONFIG);
    let weights_path = checkpoint.join(ADAPTER_WEIGHTS);
    for p in [&config_path, &weights_path] {
        if !p.is_file() {
            return Err(LoraError::Adapter {
                path: p.clone(),
                why: "missing (not a LoRA checkpoint)".into(),
            });
        }
    }
    let (config, written_base) = LoraConfig::from_peft_file(&config_path)?;
    let base_name =
        base.map(str::to_string)
            .or(written_base)
            .ok_or_else(|| LoraError::Adapter {
                path: config_path.clone(),
                why: "field `base_model_name_or_path` is empty; pass --base".into(),
            })?;
    let dir = match resolve(&base_name) {
        Ok(ModelSource::Folder(dir)) => dir,
        Ok(ModelSource::Tiny) => {
            return Err(LoraError::Adapter {
                path: config_path,
                why: "the base is the built-in tiny model, which has no Hugging Face folder: \
                      write it with `cove export-tiny DIR --seed SEED` and pass --base DIR"
                    .into(),
            });
        }
        Err(e) => {
            return Err(LoraError::Adapter {
                path: config_path,
                why: format!("base model: {e}"),
            });
        }
    };
    let policy = Policy::from_hf_dir(&dir, Dtype::F32, tch::Device::Cpu)?;
    let adapter = Tensor::read_safetensors(&weights_path).map_err(|e| LoraError::Adapter {
        path: weights_path.clone(),
        why: e.to_string(),
    })?;
    let vars: Vec<(String, Tensor)> = policy.model.var_store().variables().into_iter().collect();
    let merged = merge_into(&vars, &adapter, &config, &weights_path)?;
    policy.save_pretrained_replacing(out)?;
    Ok(format!(
        "merged {merged} adapted projections (rank {}, alpha {}) of {} into {} over {}\n",
        config.rank,
        config.alpha,
        checkpoint.display(),
        out.display(),
        dir.display()
    ))
}
