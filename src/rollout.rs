//! Rollouts: batched, KV-cached sampling from a [`Policy`].
//!
//! [`generate`] takes ragged prompts (token ids), left-pads them into one batch, runs
//! one prefill, copies its KV cache to the `n` samples of each prompt, then decodes one
//! token per step for every unfinished sample, dropping finished rows from the batch.
//! Each sample draws from its own ChaCha8 stream (seed, sample number), so results do
//! not depend on libtorch's global generator.
//!
//! Sampling follows transformers' order: `logits / temperature`, then top-k, then top-p
//! on the renormalised remainder, then an exact inverse-CDF draw. `temperature = 0`
//! means greedy. The per-token `logprobs` and `entropies` returned are those of the
//! untruncated distribution `softmax(logits / temperature)` (of `softmax(logits)` when
//! greedy) — the distribution [`crate::model::response_logprobs`] scores with the same
//! temperature, so the learner's old and new log-probs agree.
//!
//! ```no_run
//! use cove::rollout::{generate, SamplingConfig};
//! let policy = cove::tiny::policy(&Default::default(), 0, tch::Device::Cpu).unwrap();
//! let prompts = vec![policy.encode("What is 12+7?").unwrap()];
//! let cfg = SamplingConfig { n: 8, temperature: 1.0, max_new_tokens: 16, ..Default::default() };
//! for s in generate(&policy, &prompts, &cfg).unwrap() {
//!     println!("{} {:?} {}", s.prompt_index, s.finish_reason, s.text);
//! }
//! ```

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::model::lora::MergedAdapters;
use crate::model::{ModelError, Policy};

/// How to sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingConfig {
    /// Samples per prompt (GRPO's group size); they share one prefill.
    pub n: usize,
    /// Softmax temperature; 0 = greedy.
    pub temperature: f64,
    /// Nucleus sampling: keep the smallest set of most likely tokens whose mass reaches
    /// `top_p` (1 = off).
    pub top_p: f64,
    /// Keep the `top_k` most likely tokens (0 = off).
    pub top_k: usize,
    /// Longest response, in tokens.
    pub max_new_tokens: usize,
    /// Strings that end a response when its text contains one (the text is cut before
    /// it; the tokens are kept up to the one that completed it).
    pub stop: Vec<String>,
    /// Seed of the per-sample random streams.
    pub seed: u64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            n: 1,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            max_new_tokens: 256,
            stop: Vec::new(),
            seed: 0,
        }
    }
}

impl SamplingConfig {
    /// Checks every field; the error names the field.
    pub fn validate(&self) -> Result<(), RolloutError> {
        let bad = |field: &str, message: &str| {
            Err(RolloutError::Config {
                field: field.into(),
                message: message.into(),
            })
        };
        if self.n == 0 {
            return bad("n", "must be at least 1");
        }
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return bad("temperature", "must be finite and >= 0");
        }
        if !self.top_p.is_finite() || self.top_p <= 0.0 || self.top_p > 1.0 {
            return bad("top_p", "must lie in (0, 1]");
        }
        if self.stop.iter().any(String::is_empty) {
            return bad("stop", "stop strings must not be empty");
        }
        Ok(())
    }
}

/// Why a sample ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// It produced an EOS token (kept as its last token).
    Eos,
    /// Its text contains a stop string.
    Stop,
    /// It reached `max_new_tokens`.
    Length,
}

/// One generated response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Index of its prompt in the `prompts` argument.
    pub prompt_index: usize,
    /// Which of the `n` samples of that prompt it is.
    pub sample_index: usize,
    /// Response token ids (the EOS token included when `finish_reason` is `Eos`).
    pub token_ids: Vec<i64>,
    /// log π(token) under `softmax(logits / temperature)`, one per token.
    pub logprobs: Vec<f32>,
    /// Entropy of `softmax(logits / temperature)` at each step, one per token.
    pub entropies: Vec<f32>,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Decoded response, special tokens skipped, cut before the stop string if any.
    pub text: String,
}

/// Errors of [`generate`].
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// A [`SamplingConfig`] field is out of range.
    #[error("sampling config field `{field}`: {message}")]
    Config {
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A prompt is unusable.
    #[error("prompt {index}: {message}")]
    Prompt {
        /// Its index in `prompts`.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// The model or tokenizer failed.
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl From<tch::TchError> for RolloutError {
    fn from(e: tch::TchError) -> Self {
        RolloutError::Model(ModelError::Torch(e))
    }
}

/// Per-sample state while decoding.
struct Running {
    tokens: Vec<i64>,
    logprobs: Vec<f32>,
    entropies: Vec<f32>,
    finish: Option<FinishReason>,
    rng: ChaCha8Rng,
}

/// Samples `cfg.n` responses for every prompt; returns them prompt-major (all samples
/// of prompt 0, then prompt 1, ...). See the module docs.
pub fn generate(
    policy: &Policy,
    prompts: &[Vec<i64>],
    cfg: &SamplingConfig,
) -> Result<Vec<Sample>, RolloutError> {
    let keys: Vec<u64> = (0..prompts.len() as u64).collect();
    generate_keyed(policy, prompts, &keys, cfg)
}

/// [`generate`] with each prompt's random streams keyed by `keys[i]` instead of its
/// position: sample `j` of prompt `i` draws from stream `keys[i] * n + j` of
/// `cfg.seed`. A data-parallel rank passes its prompts' global indices, so a prompt
/// gets the same samples whichever rank, and whichever batch, it is in.
pub fn generate_keyed(
    policy: &Policy,
    prompts: &[Vec<i64>],
    keys: &[u64],
    cfg: &SamplingConfig,
) -> Result<Vec<Sample>, RolloutError> {
    cfg.validate()?;
    if keys.len() != prompts.len() {
        return Err(RolloutError::Config {
            field: "keys".into(),
            message: format!("{} keys for {} prompts", keys.len(), prompts.len()),
        });
    }
    let vocab = policy.model.vocab_size();
    for (index, p) in prompts.iter().enumerate() {
        if p.is_empty() {
            return Err(RolloutError::Prompt {
                index,
                message: "empty prompt".into(),
            });
        }
        if let Some(bad) = p.iter().find(|&&t| t < 0 || t >= vocab) {
            return Err(RolloutError::Prompt {
                index,
                message: format!("token id {bad} outside the vocabulary (size {vocab})"),
            });
        }
    }
    let total = prompts.len() * cfg.n;
    let mut runs: Vec<Running> = (0..total)
        .map(|i| {
            let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
            rng.set_stream(keys[i / cfg.n] * cfg.n as u64 + (i % cfg.n) as u64);
            Running {
                tokens: Vec::new(),
                logprobs: Vec::new(),
                entropies: Vec::new(),
                finish: (cfg.max_new_tokens == 0).then_some(FinishReason::Length),
                rng,
            }
        })
        .collect();
    if total > 0 && cfg.max_new_tokens > 0 {
        decode(policy, prompts, cfg, &mut runs)?;
    }
    runs.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let finish = r.finish.unwrap_or(FinishReason::Length);
            let mut text = policy.decode(&r.tokens)?;
            if finish == FinishReason::Stop
                && let Some(cut) = cfg.stop.iter().filter_map(|s| text.find(s.as_str())).min()
            {
                text.truncate(cut);
            }
            Ok(Sample {
                prompt_index: i / cfg.n,
                sample_index: i % cfg.n,
                token_ids: r.tokens,
                logprobs: r.logprobs,
                entropies: r.entropies,
                finish_reason: finish,
                text,
            })
        })
        .collect()
}

fn decode(
    policy: &Policy,
    prompts: &[Vec<i64>],
    cfg: &SamplingConfig,
    runs: &mut [Running],
) -> Result<(), RolloutError> {
    let _guard = tch::no_grad_guard();
    let model = policy.model.as_ref();
    // LoRA adapters decode merged into their weights (faster than the extra matmuls).
    let _merged = MergedAdapters::new(model);
    let device = model.device();
    let b = prompts.len() as i64;
    let p_max = prompts.iter().map(Vec::len).max().unwrap_or(0) as i64;
    let mut ids = vec![policy.pad_token_id; (b * p_max) as usize];
    let mut mask = vec![0i64; (b * p_max) as usize];
    let mut pos = vec![0i64; (b * p_max) as usize];
    for (row, p) in prompts.iter().enumerate() {
        let off = row * p_max as usize + (p_max as usize - p.len());
        for (j, &t) in p.iter().enumerate() {
            ids[off + j] = t;
            mask[off + j] = 1;
            pos[off + j] = j as i64;
        }
    }
    let to = |v: &[i64], rows: i64, cols: i64| {
        Tensor::from_slice(v).view([rows, cols]).to_device(device)
    };
    let mut attn = to(&mask, b, p_max);
    let mut cache = model.new_cache(b, p_max + cfg.max_new_tokens as i64);
    let logits = model.forward(
        &to(&ids, b, p_max),
        &to(&pos, b, p_max),
        &attn,
        Some(&mut cache),
    )?;
    let mut last = logits.select(1, p_max - 1).to_kind(Kind::Float);
    // One prefill per prompt, expanded to its n samples.
    let n = cfg.n as i64;
    if n > 1 {
        let rep = Tensor::arange(b, (Kind::Int64, device)).repeat_interleave_self_int(n, 0, b * n);
        cache.select_rows(&rep);
        attn = attn.index_select(0, &rep);
        last = last.index_select(0, &rep);
    }
    let mut active: Vec<usize> = (0..runs.len()).collect();
    let mut next_pos: Vec<i64> = active
        .iter()
        .map(|&i| prompts[i / cfg.n].len() as i64)
        .collect();
    let eos = &policy.eos_token_ids;
    let stop_window = cfg.stop.iter().map(|s| s.len()).max().unwrap_or(0) + 8;
    for step in 0..cfg.max_new_tokens {
        let u: Vec<f32> = active
            .iter()
            .map(|&i| (1.0 - runs[i].rng.random::<f64>()) as f32)
            .collect();
        let (tok, lp, ent) = sample_step(&last, cfg, &Tensor::from_slice(&u).to_device(device));
        let tok = Vec::<i64>::try_from(&tok)?;
        let lp = Vec::<f32>::try_from(&lp)?;
        let ent = Vec::<f32>::try_from(&ent)?;
        let mut keep = Vec::with_capacity(active.len());
        for (row, &i) in active.iter().enumerate() {
            let r = &mut runs[i];
            r.tokens.push(tok[row]);
            r.logprobs.push(lp[row]);
            r.entropies.push(ent[row]);
            r.finish = if eos.contains(&tok[row]) {
                Some(FinishReason::Eos)
            } else if !cfg.stop.is_empty() && {
                let tail = &r.tokens[r.tokens.len().saturating_sub(stop_window)..];
                let text = policy.decode(tail)?;
                cfg.stop.iter().any(|s| text.contains(s.as_str()))
            } {
                Some(FinishReason::Stop)
            } else if step + 1 == cfg.max_new_tokens {
                Some(FinishReason::Length)
            } else {
                None
            };
            if r.finish.is_none() {
                keep.push(row);
            }
        }
        if keep.is_empty() {
            break;
        }
        if keep.len() < active.len() {
            let idx: Vec<i64> = keep.iter().map(|&r| r as i64).collect();
            let idx = Tensor::from_slice(&idx).to_device(device);
            cache.select_rows(&idx);
            attn = attn.index_select(0, &idx);
        }
        let input: Vec<i64> = keep.iter().map(|&r| tok[r]).collect();
        let positions: Vec<i64> = keep.iter().map(|&r| next_pos[r]).collect();
        active = keep.iter().map(|&r| active[r]).collect();
        next_pos = positions.iter().map(|p| p + 1).collect();
        let a = active.len() as i64;
        attn = Tensor::cat(&[&attn, &Tensor::ones([a, 1], (Kind::Int64, device))], 1);
        let logits = model.forward(
            &to(&input, a, 1),
            &to(&positions, a, 1),
            &attn,
            Some(&mut cache),
        )?;
        last = logits.select(1, 0).to_kind(Kind::Float);
    }
    Ok(())
}

/// One sampling step over `logits` `[A, V]` (f32) with uniforms `u` `[A]` in (0, 1]:
/// returns the chosen tokens `[A]`, their log-probabilities and the entropies, both
/// under `softmax(logits / temperature)`.
pub fn sample_step(logits: &Tensor, cfg: &SamplingConfig, u: &Tensor) -> (Tensor, Tensor, Tensor) {
    let v = logits.size()[1];
    let (logp, token) = if cfg.temperature == 0.0 {
        (
            logits.log_softmax(-1, Kind::Float),
            logits.argmax(-1, false),
        )
    } else {
        let logp = (logits / cfg.temperature).log_softmax(-1, Kind::Float);
        let token = draw(&logp.exp(), cfg, u, v);
        (logp, token)
    };
    let ent = -(logp.exp() * &logp).sum_dim_intlist(-1, false, Kind::Float);
    let lp = logp.gather(1, &token.unsqueeze(1), false).squeeze_dim(1);
    (token, lp, ent)
}

/// Inverse-CDF draw from `probs` `[A, V]` after top-k / top-p truncation.
fn draw(probs: &Tensor, cfg: &SamplingConfig, u: &Tensor, v: i64) -> Tensor {
    let top_k = cfg.top_k > 0 && (cfg.top_k as i64) < v;
    let top_p = cfg.top_p < 1.0;
    let pick = |p: &Tensor| {
        let cdf = p.cumsum(-1, Kind::Float);
        let thresh = u.unsqueeze(1) * cdf.narrow(1, v - 1, 1);
        cdf.lt_tensor(&thresh)
            .sum_dim_intlist(-1, false, Kind::Int64)
            .clamp_max(v - 1)
    };
    if !top_k && !top_p {
        return pick(probs);
    }
    let (mut sorted, order) = probs.sort(-1, true);
    let device = probs.device();
    if top_k {
        let beyond = Tensor::arange(v, (Kind::Int64, device))
            .ge(cfg.top_k as i64)
            .unsqueeze(0);
        sorted = sorted.masked_fill(&beyond, 0.0);
    }
    if top_p {
        let renorm = &sorted / sorted.sum_dim_intlist(-1, true, Kind::Float);
        let before = renorm.cumsum(-1, Kind::Float) - &renorm;
        sorted = sorted.masked_fill(&before.ge(cfg.top_p), 0.0);
    }
    order
        .gather(1, &pick(&sorted).unsqueeze(1), false)
        .squeeze_dim(1)
}
