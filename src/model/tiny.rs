//! A tiny Qwen2-family policy built entirely in code, for tests, benches and the demo.
//!
//! - Tokenizer ([`tokenizer`]): character level over printable ASCII (space to `~`) and
//!   newline, plus the ChatML specials `<|endoftext|>` (id 0, also the pad id),
//!   `<|im_start|>` (1) and `<|im_end|>` (2). EOS = `<|im_end|>` and `<|endoftext|>`.
//!   Other characters are dropped when encoding. 99 tokens.
//! - Model ([`TinyConfig`]): by default 2 layers, hidden 128, 4 query / 2 key-value
//!   heads, MLP 384, tied embeddings, q/k/v bias — about 0.41M parameters, enough to
//!   learn two-digit addition ("What is 12+7?" → "19") in minutes on two CPU cores.
//! - Chat template ([`CHAT_TEMPLATE`]): ChatML, as Qwen2.5 uses.
//!
//! ```no_run
//! let policy = cove::model::tiny::policy(&cove::model::tiny::TinyConfig::default(), 0, tch::Device::Cpu).unwrap();
//! let ids = policy.encode("<|im_start|>user\nWhat is 12+7?<|im_end|>\n").unwrap();
//! ```

use std::path::PathBuf;
use std::str::FromStr;

use serde_json::json;
use tch::Device;
use tokenizers::Tokenizer;

use crate::model::weights::RandomInit;
use crate::model::{ChatTemplate, Dtype, ModelError, Policy, Qwen2Config, qwen2::Qwen2};

/// `<|endoftext|>`: end of document, and the padding id.
pub const ENDOFTEXT: i64 = 0;
/// `<|im_start|>`: opens a ChatML turn.
pub const IM_START: i64 = 1;
/// `<|im_end|>`: closes a ChatML turn (the usual EOS of a response).
pub const IM_END: i64 = 2;
/// Number of tokens: 3 specials, newline, and the 95 printable ASCII characters.
pub const VOCAB_SIZE: i64 = 99;

/// ChatML chat template (the message loop of Qwen2.5's, without tools).
pub const CHAT_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Size of the tiny model; the defaults are documented in the module docs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TinyConfig {
    /// Width of the residual stream.
    pub hidden_size: i64,
    /// Number of decoder layers.
    pub num_hidden_layers: i64,
    /// Query heads.
    pub num_attention_heads: i64,
    /// Key/value heads (grouped-query attention when fewer than the query heads).
    pub num_key_value_heads: i64,
    /// MLP width.
    pub intermediate_size: i64,
    /// Longest sequence (prompt + response) the model is meant for.
    pub max_position_embeddings: i64,
}

impl Default for TinyConfig {
    fn default() -> Self {
        TinyConfig {
            hidden_size: 128,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            intermediate_size: 384,
            max_position_embeddings: 512,
        }
    }
}

impl TinyConfig {
    /// The equivalent Hugging Face Qwen2 `config.json` contents.
    pub fn to_qwen2(&self) -> Qwen2Config {
        Qwen2Config {
            architectures: vec!["Qwen2ForCausalLM".into()],
            model_type: "qwen2".into(),
            vocab_size: VOCAB_SIZE,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            num_key_value_heads: Some(self.num_key_value_heads),
            head_dim: None,
            hidden_act: "silu".into(),
            max_position_embeddings: self.max_position_embeddings,
            rms_norm_eps: 1e-6,
            rope_theta: 10_000.0,
            rope_scaling: None,
            rope_parameters: None,
            tie_word_embeddings: true,
            attention_bias: false,
            mlp_bias: false,
            use_sliding_window: false,
        }
    }
}

/// The characters of the tiny vocabulary in id order (ids 3..99).
fn chars() -> impl Iterator<Item = char> {
    std::iter::once('\n').chain((0x20u8..=0x7e).map(char::from))
}

/// The tiny tokenizer's `tokenizer.json` (a merge-free BPE over single characters,
/// with the ChatML specials as added tokens and a `Fuse` decoder).
pub fn tokenizer_json() -> serde_json::Value {
    let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
    let added: Vec<_> = specials
        .iter()
        .enumerate()
        .map(|(id, s)| {
            json!({"id": id, "content": s, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let vocab: serde_json::Map<String, serde_json::Value> = specials
        .iter()
        .map(|s| s.to_string())
        .chain(chars().map(String::from))
        .enumerate()
        .map(|(i, s)| (s, json!(i)))
        .collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "Fuse"},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": []
        }
    })
}

/// The tiny tokenizer (see the module docs).
pub fn tokenizer() -> Result<Tokenizer, ModelError> {
    Tokenizer::from_str(&tokenizer_json().to_string()).map_err(|e| ModelError::Tokenizer {
        path: PathBuf::from("<built-in tiny tokenizer>"),
        message: e.to_string(),
    })
}

/// The tiny policy: a randomly initialised (normal, std 0.02, from `seed`) f32 model of
/// size `config` on `device`, the tiny tokenizer and the ChatML template.
pub fn policy(config: &TinyConfig, seed: u64, device: Device) -> Result<Policy, ModelError> {
    let source = PathBuf::from("<built-in tiny model>");
    let cfg = config.to_qwen2();
    cfg.validate(&source.join("config.json"))?;
    let model = Qwen2::new(
        &cfg,
        &mut RandomInit::new(seed, 0.02),
        Dtype::F32.kind(),
        device,
    )?;
    let chat = ChatTemplate::new(
        CHAT_TEMPLATE,
        vec![
            ("eos_token".into(), "<|im_end|>".into()),
            ("pad_token".into(), "<|endoftext|>".into()),
        ],
        &source.join("tokenizer_config.json"),
    )?;
    Ok(Policy {
        model: Box::new(model),
        tokenizer: tokenizer()?,
        eos_token_ids: vec![IM_END, ENDOFTEXT],
        pad_token_id: ENDOFTEXT,
        chat_template: Some(chat),
        config: cfg,
        source,
    })
}

/// A randomly initialised model of Qwen2.5-0.5B's shape (24 layers, width 896, MLP
/// 4,864, 14 query / 2 key-value heads, q/k/v bias, tied embeddings, vocabulary
/// 151,936, rope theta 1e6) in f32 on `device`, with the tiny tokenizer and template:
/// a real model's compute and memory without its weights, for benchmarks and the GPU
/// check (the tokenizer's ids are a subset of its vocabulary).
pub fn qwen2_5_0_5b_shaped(seed: u64, device: Device) -> Result<Policy, ModelError> {
    let mut policy = policy(&TinyConfig::default(), seed, Device::Cpu)?;
    let mut cfg = TinyConfig {
        hidden_size: 896,
        num_hidden_layers: 24,
        num_attention_heads: 14,
        num_key_value_heads: 2,
        intermediate_size: 4864,
        max_position_embeddings: 32768,
    }
    .to_qwen2();
    cfg.vocab_size = 151_936;
    cfg.rope_theta = 1_000_000.0;
    cfg.attention_bias = true;
    policy.model = Box::new(Qwen2::new(
        &cfg,
        &mut RandomInit::new(seed, 0.02),
        Dtype::F32.kind(),
        device,
    )?);
    policy.config = cfg;
    Ok(policy)
}
