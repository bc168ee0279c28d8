//! `config.json` of a Qwen2 / Llama checkpoint, with the Hugging Face field names.
//!
//! One struct covers both families; [`Qwen2Config::validate`] resolves the family
//! differences (q/k/v bias, o_proj bias, tied embeddings, explicit `head_dim`, RoPE
//! scaling) and rejects what this implementation does not support with an error that
//! names the file and the field.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ModelError;

/// Model family, from `model_type` in `config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Qwen2 / Qwen2.5: bias on q/k/v projections, none on o_proj.
    Qwen2,
    /// Llama 2 / 3: `attention_bias` applies to q/k/v and o_proj alike.
    Llama,
}

/// `rope_scaling` (transformers 4) or `rope_parameters` (transformers 5, which also
/// carries `rope_theta`) of `config.json`. Only the variants implemented here are
/// accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    /// `rope_type` (new name) or `type` (old name): `default`, `linear` or `llama3`.
    #[serde(alias = "type")]
    pub rope_type: String,
    /// transformers 5 `rope_parameters.rope_theta`: overrides the top-level `rope_theta`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    /// Scaling factor (`linear`, `llama3`).
    #[serde(default)]
    pub factor: Option<f64>,
    /// Llama 3: wavelengths above `original_max_position_embeddings / low_freq_factor`
    /// are divided by `factor`.
    #[serde(default)]
    pub low_freq_factor: Option<f64>,
    /// Llama 3: wavelengths below `original_max_position_embeddings / high_freq_factor`
    /// are kept.
    #[serde(default)]
    pub high_freq_factor: Option<f64>,
    /// Llama 3: the context length the model was pre-trained with.
    #[serde(default)]
    pub original_max_position_embeddings: Option<f64>,
}

fn default_act() -> String {
    "silu".to_string()
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_eps() -> f64 {
    1e-6
}
fn default_max_pos() -> i64 {
    32_768
}

/// The fields of a Hugging Face `config.json` this implementation reads, with their
/// Hugging Face names and defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Qwen2Config {
    /// `Qwen2ForCausalLM` or `LlamaForCausalLM`.
    #[serde(default)]
    pub architectures: Vec<String>,
    /// `qwen2` or `llama`.
    pub model_type: String,
    /// Rows of the embedding and of `lm_head`.
    pub vocab_size: i64,
    /// Width of the residual stream.
    pub hidden_size: i64,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: i64,
    /// Number of decoder layers.
    pub num_hidden_layers: i64,
    /// Number of query heads.
    pub num_attention_heads: i64,
    /// Number of key/value heads (grouped-query attention); defaults to the query heads.
    #[serde(default)]
    pub num_key_value_heads: Option<i64>,
    /// Per-head width; defaults to `hidden_size / num_attention_heads`. Left out of an
    /// exported `config.json` when unset: transformers 5 reads `"head_dim": null` as a
    /// value and fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<i64>,
    /// MLP activation; only `silu` is supported.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Longest context the model was trained for.
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: i64,
    /// RMSNorm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base.
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    /// RoPE frequency scaling (`null` for none), transformers 4 name.
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    /// RoPE base and scaling, transformers 5 name; takes precedence when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<RopeScaling>,
    /// Whether `lm_head` shares the embedding matrix.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Llama: bias on q/k/v/o projections.
    #[serde(default)]
    pub attention_bias: bool,
    /// Llama: bias on the MLP projections.
    #[serde(default)]
    pub mlp_bias: bool,
    /// Qwen2: sliding-window attention (not supported when true).
    #[serde(default)]
    pub use_sliding_window: bool,
}

impl Qwen2Config {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ModelError::MissingFile {
                    path: path.to_path_buf(),
                    what: "the model configuration".into(),
                }
            } else {
                ModelError::Io {
                    path: path.to_path_buf(),
                    source: e,
                }
            }
        })?;
        let cfg: Qwen2Config = serde_json::from_str(&text).map_err(|e| ModelError::Json {
            path: path.to_path_buf(),
            source: e,
        })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Family from `model_type` (and `architectures`), or an error naming the field.
    pub fn family(&self, path: &Path) -> Result<Family, ModelError> {
        let family = match self.model_type.as_str() {
            "qwen2" => Family::Qwen2,
            "llama" => Family::Llama,
            other => {
                return Err(bad(
                    path,
                    "model_type",
                    format!("unsupported architecture `{other}` (supported: qwen2, llama)"),
                ));
            }
        };
        for arch in &self.architectures {
            if arch != "Qwen2ForCausalLM" && arch != "LlamaForCausalLM" {
                return Err(bad(
                    path,
                    "architectures",
                    format!(
                        "unsupported architecture `{arch}` (supported: Qwen2ForCausalLM, LlamaForCausalLM)"
                    ),
                ));
            }
        }
        Ok(family)
    }

    /// Checks every field this implementation depends on; `path` names the file in errors.
    pub fn validate(&self, path: &Path) -> Result<(), ModelError> {
        self.family(path)?;
        for (field, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
        ] {
            if v <= 0 {
                return Err(bad(path, field, format!("must be positive, got {v}")));
            }
        }
        let kv = self.num_kv_heads();
        if kv <= 0 || self.num_attention_heads % kv != 0 {
            return Err(bad(
                path,
                "num_key_value_heads",
                format!(
                    "{kv} does not divide num_attention_heads = {}",
                    self.num_attention_heads
                ),
            ));
        }
        if self.head_dim.is_none() && self.hidden_size % self.num_attention_heads != 0 {
            return Err(bad(
                path,
                "num_attention_heads",
                format!(
                    "{} does not divide hidden_size = {} and head_dim is not given",
                    self.num_attention_heads, self.hidden_size
                ),
            ));
        }
        let hd = self.head_dim();
        if hd <= 0 || hd % 2 != 0 {
            return Err(bad(
                path,
                "head_dim",
                format!("must be positive and even, got {hd}"),
            ));
        }
        if self.hidden_act != "silu" {
            return Err(bad(
                path,
                "hidden_act",
                format!(
                    "unsupported activation `{}` (supported: silu)",
                    self.hidden_act
                ),
            ));
        }
        if self.use_sliding_window {
            return Err(bad(
                path,
                "use_sliding_window",
                "sliding-window attention is not supported".into(),
            ));
        }
        if !positive(self.rms_norm_eps) {
            return Err(bad(path, "rms_norm_eps", "must be positive".into()));
        }
        let (theta, scaling) = self.rope();
        let (theta_field, field) = if self.rope_parameters.is_some() {
            ("rope_parameters.rope_theta", "rope_parameters")
        } else {
            ("rope_theta", "rope_scaling")
        };
        if !positive(theta) {
            return Err(bad(path, theta_field, "must be positive".into()));
        }
        if let Some(rs) = scaling {
            let need = |name: &str, v: Option<f64>| {
                v.filter(|x| positive(*x)).ok_or_else(|| {
                    bad(
                        path,
                        &format!("{field}.{name}"),
                        "missing or not positive".into(),
                    )
                })
            };
            match rs.rope_type.as_str() {
                "default" => {}
                "linear" => {
                    need("factor", rs.factor)?;
                }
                "llama3" => {
                    need("factor", rs.factor)?;
                    let lo = need("low_freq_factor", rs.low_freq_factor)?;
                    let hi = need("high_freq_factor", rs.high_freq_factor)?;
                    need(
                        "original_max_position_embeddings",
                        rs.original_max_position_embeddings,
                    )?;
                    if hi <= lo {
                        return Err(bad(
                            path,
                            &format!("{field}.high_freq_factor"),
                            "must exceed low_freq_factor".into(),
                        ));
                    }
                }
                other => {
                    return Err(bad(
                        path,
                        &format!("{field}.rope_type"),
                        format!(
                            "unsupported RoPE scaling `{other}` (supported: default, linear, llama3)"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Number of key/value heads after defaulting.
    pub fn num_kv_heads(&self) -> i64 {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Per-head width after defaulting.
    pub fn head_dim(&self) -> i64 {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Whether q/k/v projections carry a bias.
    pub fn qkv_bias(&self) -> bool {
        self.model_type == "qwen2" || self.attention_bias
    }

    /// Whether o_proj carries a bias.
    pub fn o_bias(&self) -> bool {
        self.model_type == "llama" && self.attention_bias
    }

    /// RoPE base and scaling after resolving `rope_parameters` / `rope_theta` +
    /// `rope_scaling`.
    pub fn rope(&self) -> (f64, Option<&RopeScaling>) {
        match &self.rope_parameters {
            Some(rp) => (rp.rope_theta.unwrap_or(self.rope_theta), Some(rp)),
            None => (self.rope_theta, self.rope_scaling.as_ref()),
        }
    }

    /// RoPE inverse frequencies (length `head_dim / 2`), computed the way transformers
    /// does (`default`, `linear` or `llama3` rope type), in f32.
    pub fn inv_freq(&self) -> Vec<f32> {
        let dim = self.head_dim();
        let (theta, scaling) = self.rope();
        let base = theta as f32;
        let mut inv: Vec<f32> = (0..dim / 2)
            .map(|i| 1.0 / base.powf((2 * i) as f32 / dim as f32))
            .collect();
        if let Some(rs) = scaling {
            match rs.rope_type.as_str() {
                "linear" => {
                    let f = rs.factor.unwrap_or(1.0) as f32;
                    inv.iter_mut().for_each(|x| *x /= f);
                }
                "llama3" => {
                    let factor = rs.factor.unwrap_or(1.0) as f32;
                    let lo = rs.low_freq_factor.unwrap_or(1.0) as f32;
                    let hi = rs.high_freq_factor.unwrap_or(4.0) as f32;
                    let old = rs.original_max_position_embeddings.unwrap_or(8192.0) as f32;
                    let low_wavelen = old / lo;
                    let high_wavelen = old / hi;
                    for x in inv.iter_mut() {
                        let wavelen = 2.0 * std::f32::consts::PI / *x;
                        let scaled = if wavelen > low_wavelen {
                            *x / factor
                        } else {
                            *x
                        };
                        let medium = wavelen >= high_wavelen && wavelen <= low_wavelen;
                        *x = if medium {
                            let smooth = (old / wavelen - lo) / (hi - lo);
                            (1.0 - smooth) * scaled / factor + smooth * scaled
                        } else {
                            scaled
                        };
                    }
                }
                _ => {}
            }
        }
        inv
    }
}

/// Finite and strictly positive.
fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

fn bad(path: &Path, field: &str, message: String) -> ModelError {
    ModelError::Field {
        path: PathBuf::from(path),
        field: field.to_string(),
        message,
    }
}
