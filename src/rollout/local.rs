//! The in-process engine: batched, KV-cached sampling from a [`Policy`].
//!
//! [`generate`] takes ragged prompts (token ids), left-pads them into one batch, runs
//! one prefill, copies its KV cache to the `n` samples of each prompt, then decodes one
//! token per step for every unfinished sample, dropping finished rows from the batch.
//! Each sample draws from its own ChaCha8 stream (seed, sample number), so results do
//! not depend on libtorch's global generator. The per-token `logprobs` and `entropies`
//! returned are those of the untruncated distribution `softmax(logits / temperature)`
//! (of `softmax(logits)` when greedy): the distribution
//! [`crate::model::response_logprobs`] scores with the same temperature, so the
//! learner's old and new log-probs agree.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

use super::sampler::sample_step;
use super::{
    FinishReason, RolloutEngine, RolloutError, RolloutRequest, Sample, SamplingConfig, Trajectory,
};
use crate::model::lora::MergedAdapters;
use crate::model::{KvCache, Policy};

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
    check_prompts(policy, prompts, keys)?;
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

/// Checks a request's prompts (not empty, ids inside the vocabulary) and that there is one
/// random-stream key per prompt.
pub(super) fn check_prompts(
    policy: &Policy,
    prompts: &[Vec<i64>],
    keys: &[u64],
) -> Result<(), RolloutError> {
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
    Ok(())
}

/// The decoding state after the prefill: the KV cache, the attention mask over it and the
/// last position's logits (f32), one row per sample.
pub(super) struct Prefilled {
    pub cache: KvCache,
    pub attn: Tensor,
    pub last: Tensor,
}

/// One batched prefill of the left-padded `prompts`, expanded to `cfg.n` rows per prompt
/// (prompt-major): the start of the local and the multi-turn engines' decoding. Call
/// under a no-grad guard.
pub(super) fn prefill(
    policy: &Policy,
    prompts: &[Vec<i64>],
    cfg: &SamplingConfig,
) -> Result<Prefilled, RolloutError> {
    let model = policy.model.as_ref();
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
    Ok(Prefilled { cache, attn, last })
}

/// Keeps the batch rows `keep` (in order) of a decoding state's cache and attention mask:
/// finished samples leave the batch.
pub(super) fn keep_rows(cache: &mut KvCache, attn: &mut Tensor, keep: &[usize]) {
    let idx: Vec<i64> = keep.iter().map(|&r| r as i64).collect();
    let idx = Tensor::from_slice(&idx).to_device(attn.device());
    cache.select_rows(&idx);
    *attn = attn.index_select(0, &idx);
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
    let to = |v: &[i64], rows: i64, cols: i64| {
        Tensor::from_slice(v).view([rows, cols]).to_device(device)
    };
    let Prefilled {
        mut cache,
        mut attn,
        mut last,
    } = prefill(policy, prompts, cfg)?;
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
            keep_rows(&mut cache, &mut attn, &keep);
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

/// The in-process engine: [`generate_keyed`] on the policy being trained.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalEngine;

impl RolloutEngine for LocalEngine {
    fn name(&self) -> &str {
        "local"
    }

    fn generate(
        &mut self,
        policy: &Policy,
        request: &RolloutRequest,
    ) -> Result<Vec<Trajectory>, RolloutError> {
        request.check_tasks()?;
        let samples = generate_keyed(policy, request.prompts, request.keys, request.sampling)?;
        Ok(samples
            .into_iter()
            .map(|s| {
                let prompt = &request.prompts[s.prompt_index];
                let mut tokens = Vec::with_capacity(prompt.len() + s.token_ids.len());
                tokens.extend_from_slice(prompt);
                tokens.extend_from_slice(&s.token_ids);
                let mut loss_mask = vec![false; prompt.len()];
                loss_mask.resize(tokens.len(), true);
                Trajectory {
                    task: request.tasks[s.prompt_index],
                    group: s.prompt_index,
                    prompt_len: prompt.len(),
                    tokens,
                    loss_mask,
                    logprobs: Some(s.logprobs),
                    entropies: Some(s.entropies),
                    policy_version: request.policy_version,
                    text: s.text,
                    score: None,
                    finish: s.finish_reason,
                    episode: None,
                }
            })
            .collect())
    }
}
