//! Policy models: the [`CausalLm`] trait, the Qwen2/Llama implementation
//! ([`qwen2::Qwen2`]), Hugging Face loading ([`Policy::from_hf_dir`]), chat templates
//! ([`ChatTemplate`]) and the training forward ([`response_logprobs`]).
//!
//! # Using it
//! ```no_run
//! use cove::model::{Dtype, Policy, Message};
//! use tch::Device;
//! # fn main() -> Result<(), cove::model::ModelError> {
//! // A Hugging Face folder (config.json, *.safetensors, tokenizer.json, ...).
//! let policy = Policy::from_hf_dir("Qwen2.5-Math-1.5B".as_ref(), Dtype::Bf16, Device::cuda_if_available())?;
//! // Or the tiny model for tests and the demo: `cove::model::tiny::policy(seed, device)`.
//! let text = policy.apply_chat_template(&[Message::user("What is 12+7?")], true)?;
//! let prompt_ids = policy.encode(&text)?;
//! # Ok(()) }
//! ```
//! Generation lives in [`crate::rollout`]; the learner calls [`response_logprobs`] for
//! per-token log-probabilities (with grad) and entropies, and optimises
//! `policy.model.var_store()`'s trainable variables.
//!
//! # Forward conventions
//! [`CausalLm::forward`] takes `input_ids` `[B, T]` (i64), `position_ids` `[B, T]` (i64),
//! an `attention_mask` `[B, S]` over every key (the cached ones, then the `T` new ones;
//! 1 = real token, 0 = padding) and an optional [`KvCache`]; it returns logits
//! `[B, T, vocab]` in the model dtype. Attention is causal on top of the mask. Left
//! padding (generation) and right padding (training) both work.

pub mod chat;
pub mod config;
pub mod export;
pub mod hf;
pub mod lora;
pub mod named;
pub mod qwen2;
pub mod spec;
pub mod tiny;
pub mod train;
pub mod weights;

use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor, nn};
use tokenizers::Tokenizer;

pub use chat::{ChatTemplate, Message, last_user_text};
pub use config::{Family, Qwen2Config, RopeScaling};
pub use lora::{LoraConfig, LoraInfo, TrainSwitch};
pub use spec::ModelSpec;
pub use train::{
    Backward, LOGIT_BUDGET, LogprobOptions, PackedItem, ResponseLogprobs, packed_response_logprobs,
    response_logprobs,
};

/// Everything that can go wrong building, loading or running a model. Each variant
/// names the file and, where there is one, the field or tensor.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A required file is absent.
    #[error("{path}: missing ({what})")]
    MissingFile {
        /// The file that was looked for.
        path: PathBuf,
        /// What it is needed for.
        what: String,
    },
    /// A JSON file does not parse (serde names line and column).
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A field has a value this implementation cannot use.
    #[error("{path}: field `{field}`: {message}")]
    Field {
        /// The file.
        path: PathBuf,
        /// The field (dotted for nested fields).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A safetensors file is malformed or lacks a tensor.
    #[error("{path}: tensor `{tensor}`: {message}")]
    Tensor {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// What is wrong (missing, shape mismatch, dtype).
        message: String,
    },
    /// The tokenizer could not be loaded or failed on a text.
    #[error("{path}: tokenizer: {message}")]
    Tokenizer {
        /// The file (or `<built-in>` for the tiny tokenizer).
        path: PathBuf,
        /// The tokenizers crate's message.
        message: String,
    },
    /// The chat template is absent, does not compile or failed to render.
    #[error("{path}: field `chat_template`: {message}")]
    ChatTemplate {
        /// `tokenizer_config.json` (or `<built-in>`).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A caller passed inputs of the wrong shape or content.
    #[error("invalid input: {0}")]
    Input(String),
    /// libtorch reported an error.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// Parameter dtype of a loaded model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// 32-bit float (parity tests, CPU training of small models).
    F32,
    /// bfloat16 (the usual GPU training dtype).
    Bf16,
    /// float16.
    F16,
}

impl Dtype {
    /// The libtorch kind.
    pub fn kind(self) -> Kind {
        match self {
            Dtype::F32 => Kind::Float,
            Dtype::Bf16 => Kind::BFloat16,
            Dtype::F16 => Kind::Half,
        }
    }
}

impl std::str::FromStr for Dtype {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" | "float32" => Ok(Dtype::F32),
            "bf16" | "bfloat16" => Ok(Dtype::Bf16),
            "f16" | "float16" => Ok(Dtype::F16),
            other => Err(format!("unknown dtype `{other}` (f32, bf16, f16)")),
        }
    }
}

/// A decoder-only language model: ids in, next-token logits out, with a KV cache.
///
/// Implemented by [`qwen2::Qwen2`]. The split into [`CausalLm::hidden_states`] and
/// [`CausalLm::logits`] lets the training forward apply `lm_head` in chunks.
pub trait CausalLm: Send {
    /// Final hidden states `[B, T, hidden]` (after the last norm). See the module docs
    /// for the input conventions. With a cache, the new keys/values are appended to it.
    fn hidden_states(
        &self,
        input_ids: &Tensor,
        position_ids: &Tensor,
        attention_mask: &Tensor,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor, ModelError>;

    /// Final hidden states `[T, hidden]` of one packed row: `input_ids` and
    /// `position_ids` are `[T]`, and `segments` (see [`Segment`]) cover `0..T` in order.
    /// A token attends causally within its segment and to the whole of the segment's
    /// prefix, never across segments otherwise; no padding, no KV cache.
    fn packed_hidden_states(
        &self,
        input_ids: &Tensor,
        position_ids: &Tensor,
        segments: &[Segment],
    ) -> Result<Tensor, ModelError>;

    /// [`CausalLm::packed_hidden_states`] with activation checkpointing: the decoder
    /// layers run without autograd and only each layer's input is kept; the returned
    /// hidden states have a graph back to the last layer's output only, and
    /// [`LayerCheckpoints::backward`] recomputes the layers one at a time, last first,
    /// to carry the gradient on to the parameters. Values equal the plain forward's.
    fn checkpointed_hidden_states(
        &self,
        input_ids: &Tensor,
        position_ids: &Tensor,
        segments: &[Segment],
    ) -> Result<(Tensor, LayerCheckpoints<'_>), ModelError>;

    /// `lm_head` applied to hidden states `[.., hidden]` → logits `[.., vocab]`.
    fn logits(&self, hidden: &Tensor) -> Tensor;

    /// Logits `[B, T, vocab]` for `input_ids` `[B, T]`; see the module docs.
    fn forward(
        &self,
        input_ids: &Tensor,
        position_ids: &Tensor,
        attention_mask: &Tensor,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor, ModelError> {
        let h = self.hidden_states(input_ids, position_ids, attention_mask, cache)?;
        Ok(self.logits(&h))
    }

    /// An empty KV cache for `batch` rows with room for `capacity` positions (it grows
    /// when exceeded).
    fn new_cache(&self, batch: i64, capacity: i64) -> KvCache;

    /// The parameters: trainable variables for the optimizer, named variables (Hugging
    /// Face names) for checkpoints.
    fn var_store(&self) -> &nn::VarStore;

    /// Mutable access to the parameters (loading a checkpoint, changing the device).
    fn var_store_mut(&mut self) -> &mut nn::VarStore;

    /// Attaches LoRA adapters ([`lora`]) to the projections `config` targets and
    /// freezes every base weight, so only the adapters are trainable. `base_model`
    /// names the base (a model name or folder) for the adapter's `adapter_config.json`.
    fn attach_lora(&mut self, config: &LoraConfig, base_model: &str) -> Result<(), ModelError>;

    /// The attached adapters' configuration, if any.
    fn lora(&self) -> Option<&LoraInfo>;

    /// The switch of the training forward (adapter dropout is active only while it is
    /// on); the trainer turns it on around its training forwards.
    fn train_switch(&self) -> TrainSwitch;

    /// Runs the adapters merged into their weights (`W + scale · B A`, computed once,
    /// base weights untouched) until called with `false`; rollout does this.
    fn set_adapters_merged(&self, on: bool);

    /// Computes without the adapters (each adapted projection with its base weight
    /// alone, no copy) until called with `false`: the frozen base under a LoRA run.
    fn set_adapters_off(&self, on: bool);

    /// Number of logits per position.
    fn vocab_size(&self) -> i64;

    /// Device of the parameters.
    fn device(&self) -> Device;

    /// dtype of the parameters.
    fn kind(&self) -> Kind;
}

/// Runs decoder layer `i` with autograd on an input (see [`LayerCheckpoints`]).
pub type LayerFn<'a> = Box<dyn Fn(usize, &Tensor) -> Tensor + 'a>;

/// What activation checkpointing keeps of a forward
/// ([`CausalLm::checkpointed_hidden_states`]): each decoder layer's input (detached), the
/// embedding output with its graph, the last layer's output as a leaf that the hidden
/// states depend on, and a way to run one layer again with autograd.
pub struct LayerCheckpoints<'a> {
    inputs: Vec<Tensor>,
    embedded: Tensor,
    top: Tensor,
    layer: LayerFn<'a>,
}

impl<'a> LayerCheckpoints<'a> {
    /// Assembles the checkpoints of a forward: `inputs[i]` is layer `i`'s input,
    /// `embedded` the embedding output (with its graph), `top` the leaf (requiring
    /// grad) standing for the last layer's output, `layer(i, x)` runs layer `i` on `x`.
    pub fn new(inputs: Vec<Tensor>, embedded: Tensor, top: Tensor, layer: LayerFn<'a>) -> Self {
        LayerCheckpoints {
            inputs,
            embedded,
            top,
            layer,
        }
    }

    /// Carries the gradient that a backward left on the last layer's output down
    /// through every layer (each recomputed with autograd on its saved input, then
    /// back-propagated with the gradient of its output: `Σ out · grad_out`) and the
    /// embedding (unless frozen). Does nothing when that gradient is undefined (the loss did not
    /// depend on these hidden states).
    pub fn backward(self) {
        let mut grad = self.top.grad();
        if !grad.defined() {
            return;
        }
        for (i, input) in self.inputs.iter().enumerate().rev() {
            let x = input.detach().set_requires_grad(true);
            let out = (self.layer)(i, &x);
            (out * &grad).sum(Kind::Float).backward();
            grad = x.grad();
        }
        // Frozen embeddings (LoRA) have nothing to receive.
        if self.embedded.requires_grad() {
            (&self.embedded * grad).sum(Kind::Float).backward();
        }
    }
}

/// One stretch of a packed row (see [`CausalLm::packed_hidden_states`]): tokens
/// `start .. start + len`. Its tokens attend causally to each other and, when `prefix`
/// names an earlier segment, to every token of that segment, which is how the
/// responses of one group share a single copy of their prompt. Position ids are the
/// caller's (they restart per sequence; a response continues its prompt's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// First token of the segment in the row.
    pub start: i64,
    /// Number of tokens (at least 1).
    pub len: i64,
    /// Index in the layout of an earlier segment (itself without a prefix) that this
    /// one sees in full; `None`: the segment is a sequence on its own.
    pub prefix: Option<usize>,
}

/// Checks that `segments` tile `0..total` in order and that every prefix is an
/// earlier segment without a prefix of its own.
pub fn check_segments(segments: &[Segment], total: i64) -> Result<(), ModelError> {
    let mut next = 0;
    for (i, s) in segments.iter().enumerate() {
        if s.start != next || s.len < 1 {
            return Err(ModelError::Input(format!(
                "segment {i} ({}..{}) does not continue at token {next}",
                s.start,
                s.start + s.len
            )));
        }
        if let Some(p) = s.prefix
            && (p >= i || segments[p].prefix.is_some())
        {
            return Err(ModelError::Input(format!(
                "segment {i}: prefix {p} must be an earlier segment without a prefix"
            )));
        }
        next += s.len;
    }
    if next != total {
        return Err(ModelError::Input(format!(
            "segments cover {next} tokens, the row has {total}"
        )));
    }
    Ok(())
}

/// Per-layer key/value cache: buffers `[B, kv_heads, capacity, head_dim]` filled up to
/// `len` positions. Built by [`CausalLm::new_cache`].
#[derive(Debug)]
pub struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
    len: i64,
}

impl KvCache {
    /// A cache of `layers` layers with zeroed buffers of shape `[batch, heads, capacity, dim]`.
    pub fn new(layers: usize, shape: [i64; 4], kind: Kind, device: Device) -> Self {
        let layers = (0..layers)
            .map(|_| {
                (
                    Tensor::zeros(shape, (kind, device)),
                    Tensor::zeros(shape, (kind, device)),
                )
            })
            .collect();
        KvCache { layers, len: 0 }
    }

    /// Number of cached positions.
    pub fn len(&self) -> i64 {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Batch rows of the cache.
    pub fn batch(&self) -> i64 {
        self.layers.first().map_or(0, |(k, _)| k.size()[0])
    }

    /// Appends `k`, `v` `[B, heads, T, dim]` to layer `layer` and returns the keys and
    /// values of all `len + T` positions. Call for every layer, then [`KvCache::advance`].
    pub fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> (Tensor, Tensor) {
        let t = k.size()[2];
        let (kb, vb) = &mut self.layers[layer];
        let cap = kb.size()[2];
        if self.len + t > cap {
            let grow = (self.len + t).max(2 * cap) - cap;
            let mut shape = kb.size();
            shape[2] = grow;
            *kb = Tensor::cat(
                &[
                    &*kb,
                    &Tensor::zeros(shape.as_slice(), (kb.kind(), kb.device())),
                ],
                2,
            );
            *vb = Tensor::cat(
                &[
                    &*vb,
                    &Tensor::zeros(shape.as_slice(), (vb.kind(), vb.device())),
                ],
                2,
            );
        }
        kb.narrow(2, self.len, t).copy_(k);
        vb.narrow(2, self.len, t).copy_(v);
        (kb.narrow(2, 0, self.len + t), vb.narrow(2, 0, self.len + t))
    }

    /// Marks `t` more positions as cached (after every layer appended them).
    pub fn advance(&mut self, t: i64) {
        self.len += t;
    }

    /// Keeps (and reorders/repeats) the batch rows listed in `index` (i64, on the cache
    /// device): drops finished rows, or expands one prefill to n samples per prompt.
    pub fn select_rows(&mut self, index: &Tensor) {
        for (k, v) in self.layers.iter_mut() {
            *k = k.index_select(0, index);
            *v = v.index_select(0, index);
        }
    }
}

/// A model with its tokenizer, special ids and chat template: what rollout and training
/// need. Built by [`Policy::from_hf_dir`] or [`crate::model::tiny::policy`].
pub struct Policy {
    /// The network.
    pub model: Box<dyn CausalLm>,
    /// The tokenizer (`tokenizer.json`).
    pub tokenizer: Tokenizer,
    /// Token ids that end a response (`generation_config.json` `eos_token_id`).
    pub eos_token_ids: Vec<i64>,
    /// Token id used to pad batches.
    pub pad_token_id: i64,
    /// The chat template, when the checkpoint has one.
    pub chat_template: Option<ChatTemplate>,
    /// The model's `config.json` contents.
    pub config: Qwen2Config,
    /// Where the policy came from (a folder, or `<built-in ...>`), for error messages.
    pub source: PathBuf,
}

impl Policy {
    /// Loads a Hugging Face folder: `config.json`, `model.safetensors` or
    /// `model.safetensors.index.json` (memory-mapped), `tokenizer.json`,
    /// `tokenizer_config.json` (chat template, optional) and `generation_config.json`
    /// (EOS ids, optional; falls back to `config.json` / `tokenizer_config.json`).
    pub fn from_hf_dir(dir: &Path, dtype: Dtype, device: Device) -> Result<Self, ModelError> {
        hf::load_policy(dir, dtype, device)
    }

    /// Token ids of `text` (special-token strings such as `<|im_start|>` are recognised;
    /// no BOS/EOS is added).
    pub fn encode(&self, text: &str) -> Result<Vec<i64>, ModelError> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| self.tok_err(e.to_string()))?;
        Ok(enc.get_ids().iter().map(|&i| i as i64).collect())
    }

    /// Text of `ids`, special tokens skipped.
    pub fn decode(&self, ids: &[i64]) -> Result<String, ModelError> {
        let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
        self.tokenizer
            .decode(&ids, true)
            .map_err(|e| self.tok_err(e.to_string()))
    }

    /// Renders `messages` with the checkpoint's chat template, as transformers'
    /// `apply_chat_template(..., tokenize=False)` does.
    pub fn apply_chat_template(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, ModelError> {
        match &self.chat_template {
            Some(t) => t.render(messages, add_generation_prompt),
            None => Err(ModelError::ChatTemplate {
                path: self.source.join("tokenizer_config.json"),
                message: "this checkpoint has no chat template".into(),
            }),
        }
    }

    /// Token ids of a prompt given as chat messages: with `chat_template` on, rendered by
    /// the checkpoint's chat template with the generation prompt (every message kept,
    /// system prompts included); off, the text of the last user turn as it is. The one
    /// path from a prompt to ids: training, evaluation and the demo all take it.
    pub fn prompt_ids(
        &self,
        messages: &[Message],
        chat_template: bool,
    ) -> Result<Vec<i64>, ModelError> {
        if chat_template {
            return self.encode(&self.apply_chat_template(messages, true)?);
        }
        self.encode(last_user_text(messages))
    }

    /// Writes the policy as a Hugging Face folder that transformers and
    /// [`Policy::from_hf_dir`] load: `config.json`, `model.safetensors` (in the current
    /// dtype), `tokenizer.json`, `tokenizer_config.json` (chat template, EOS and pad
    /// tokens) and `generation_config.json`. A model with LoRA adapters is refused: its
    /// trainer checkpoint holds the adapter, and `cove merge-lora` writes the merged
    /// folder.
    pub fn save_pretrained(&self, dir: &Path) -> Result<(), ModelError> {
        if self.model.lora().is_some() {
            return Err(ModelError::Input(format!(
                "{}: the model has LoRA adapters; save a checkpoint and merge it with \
                 `cove merge-lora CHECKPOINT OUT`",
                dir.display()
            )));
        }
        let io = |path: &Path, e: std::io::Error| ModelError::Io {
            path: path.to_path_buf(),
            source: e,
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let write_json = |name: &str, v: &serde_json::Value| {
            let path = dir.join(name);
            let text = serde_json::to_string_pretty(v).map_err(|e| ModelError::Json {
                path: path.clone(),
                source: e,
            })?;
            std::fs::write(&path, text).map_err(|e| io(&path, e))
        };
        let mut config = serde_json::to_value(&self.config).map_err(|e| ModelError::Json {
            path: dir.join("config.json"),
            source: e,
        })?;
        let dtype = match self.model.kind() {
            Kind::BFloat16 => "bfloat16",
            Kind::Half => "float16",
            _ => "float32",
        };
        config["torch_dtype"] = dtype.into();
        config["eos_token_id"] = self.eos_token_ids.first().copied().into();
        write_json("config.json", &config)?;
        write_json(
            "generation_config.json",
            &serde_json::json!({"eos_token_id": self.eos_token_ids, "pad_token_id": self.pad_token_id}),
        )?;
        let token = |id: i64| self.tokenizer.id_to_token(id as u32);
        let mut tc = serde_json::json!({"tokenizer_class": "PreTrainedTokenizerFast"});
        if let Some(eos) = self.eos_token_ids.first().and_then(|&i| token(i)) {
            tc["eos_token"] = eos.into();
        }
        if let Some(pad) = token(self.pad_token_id) {
            tc["pad_token"] = pad.into();
        }
        if let Some(t) = &self.chat_template {
            tc["chat_template"] = t.source().into();
        }
        write_json("tokenizer_config.json", &tc)?;
        let tok_path = dir.join("tokenizer.json");
        self.tokenizer
            .save(&tok_path, true)
            .map_err(|e| ModelError::Tokenizer {
                path: tok_path.clone(),
                message: e.to_string(),
            })?;
        self.model.var_store().save(dir.join("model.safetensors"))?;
        Ok(())
    }

    /// [`Policy::save_pretrained`] into `out` as a whole: written to a temporary sibling
    /// folder, then renamed over `out` (replacing what was there), so `out` is never a
    /// half-written model.
    pub fn save_pretrained_replacing(&self, out: &Path) -> Result<(), ModelError> {
        let name = out
            .file_name()
            .map_or("model".into(), |n| n.to_string_lossy().into_owned());
        let tmp = out.with_file_name(format!(".{name}.partial-{}", std::process::id()));
        let io = |path: &Path, e: std::io::Error| ModelError::Io {
            path: path.to_path_buf(),
            source: e,
        };
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
        }
        self.save_pretrained(&tmp)?;
        if out.exists() {
            std::fs::remove_dir_all(out).map_err(|e| io(out, e))?;
        }
        std::fs::rename(&tmp, out).map_err(|e| io(out, e))
    }

    fn tok_err(&self, message: String) -> ModelError {
        ModelError::Tokenizer {
            path: self.source.join("tokenizer.json"),
            message,
        }
    }
}
