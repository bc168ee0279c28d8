//! The training forward: per-token log-probabilities (with grad) and entropies of the
//! response tokens of (prompt, response) pairs.
//!
//! Rows are `prompt ++ response`, right-padded; the hidden state before each response
//! token is gathered, and `lm_head` + log-softmax run over at most
//! [`LOGIT_BUDGET`] logits at a time (rows are chunked by `budget / vocab`), so the only
//! full-vocabulary tensors that stay alive are the ones autograd needs: the
//! log-softmax output of each chunk, plus its `exp` when the entropy needs a gradient.

use tch::{Kind, Tensor};

use super::{CausalLm, ModelError};

/// Upper bound on the logits materialised at once (rows × vocab) by
/// [`response_logprobs`]: 2²² f32 values = 16 MiB per chunk.
pub const LOGIT_BUDGET: i64 = 1 << 22;

/// Output of [`response_logprobs`], every tensor `[B, R]` with `R` the longest response.
#[derive(Debug)]
pub struct ResponseLogprobs {
    /// log π(token) under `softmax(logits / temperature)`, f32, with grad; 0 on padding.
    pub logprobs: Tensor,
    /// Entropy of `softmax(logits / temperature)` at each response position, f32; with
    /// grad only when asked for; 0 on padding.
    pub entropies: Tensor,
    /// 1.0 on response tokens, 0.0 on padding, f32.
    pub mask: Tensor,
}

/// Options of [`response_logprobs`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogprobOptions {
    /// Divides the logits; use the rollout's so old and new log-probs match (> 0).
    pub temperature: f64,
    /// Keep the graph for the entropy (entropy bonus, adaptive entropy control);
    /// otherwise entropies are detached and cost no autograd memory.
    pub entropy_grad: bool,
    /// Most logits (rows × vocab) materialised at once; [`LOGIT_BUDGET`] by default.
    pub logit_budget: i64,
}

impl Default for LogprobOptions {
    fn default() -> Self {
        LogprobOptions {
            temperature: 1.0,
            entropy_grad: false,
            logit_budget: LOGIT_BUDGET,
        }
    }
}

/// Log-probabilities and entropies of each `response` token given its `prompt`.
///
/// `pairs[b] = (prompt_ids, response_ids)`; prompts must be non-empty. `pad_id` fills
/// the padding (any valid id). Runs in the current grad mode: call it outside
/// `no_grad` for the policy loss, inside for reference/old log-probs.
pub fn response_logprobs(
    model: &dyn CausalLm,
    pairs: &[(&[i64], &[i64])],
    pad_id: i64,
    opts: &LogprobOptions,
) -> Result<ResponseLogprobs, ModelError> {
    let temperature = opts.temperature;
    if pairs.is_empty() {
        return Err(ModelError::Input("response_logprobs: empty batch".into()));
    }
    if !temperature.is_finite() || temperature <= 0.0 {
        return Err(ModelError::Input(format!(
            "response_logprobs: temperature must be > 0, got {temperature}"
        )));
    }
    let device = model.device();
    let b = pairs.len() as i64;
    let r = pairs.iter().map(|(_, resp)| resp.len()).max().unwrap_or(0) as i64;
    let l = pairs
        .iter()
        .map(|(p, resp)| p.len() + resp.len())
        .max()
        .unwrap_or(0) as i64;
    let mut ids = vec![pad_id; (b * l) as usize];
    let mut valid = vec![0i64; (b * l) as usize];
    let mut targets = Vec::new();
    let mut source_rows = Vec::new(); // flat index into [B * L] of the predicting position
    let mut dest = Vec::new(); // flat index into [B * R]
    for (row, (prompt, resp)) in pairs.iter().enumerate() {
        if prompt.is_empty() {
            return Err(ModelError::Input(format!(
                "response_logprobs: prompt {row} is empty"
            )));
        }
        let base = row * l as usize;
        for (j, &tok) in prompt.iter().chain(resp.iter()).enumerate() {
            ids[base + j] = tok;
            valid[base + j] = 1;
        }
        for (j, &tok) in resp.iter().enumerate() {
            targets.push(tok);
            source_rows.push((base + prompt.len() + j - 1) as i64);
            dest.push(row as i64 * r + j as i64);
        }
    }
    let mask_vals: Vec<f32> = {
        let mut m = vec![0f32; (b * r) as usize];
        for &d in &dest {
            m[d as usize] = 1.0;
        }
        m
    };
    let mask = Tensor::from_slice(&mask_vals)
        .view([b, r])
        .to_device(device);
    let zeros = || Tensor::zeros([b, r], (Kind::Float, device));
    if targets.is_empty() {
        return Ok(ResponseLogprobs {
            logprobs: zeros(),
            entropies: zeros(),
            mask,
        });
    }
    let input = Tensor::from_slice(&ids).view([b, l]).to_device(device);
    let attn = Tensor::from_slice(&valid).view([b, l]).to_device(device);
    let positions = Tensor::arange(l, (Kind::Int64, device))
        .unsqueeze(0)
        .expand([b, l], true);
    let hidden = model.hidden_states(&input, &positions, &attn, None)?;
    let hsize = hidden.size()[2];
    let hidden = hidden
        .view([b * l, hsize])
        .index_select(0, &Tensor::from_slice(&source_rows).to_device(device));
    let targets = Tensor::from_slice(&targets).to_device(device);
    let n = targets.size()[0];
    let chunk = (opts.logit_budget / model.vocab_size()).max(1);
    let mut lps = Vec::new();
    let mut ents = Vec::new();
    let mut start = 0;
    while start < n {
        let len = chunk.min(n - start);
        let logits = model
            .logits(&hidden.narrow(0, start, len))
            .to_kind(Kind::Float)
            / temperature;
        let logp = logits.log_softmax(-1, Kind::Float);
        lps.push(
            logp.gather(1, &targets.narrow(0, start, len).unsqueeze(1), false)
                .squeeze_dim(1),
        );
        let ent = if opts.entropy_grad {
            -(logp.exp() * &logp).sum_dim_intlist(-1, false, Kind::Float)
        } else {
            let _guard = tch::no_grad_guard();
            let lp = logp.detach();
            -(lp.exp() * &lp).sum_dim_intlist(-1, false, Kind::Float)
        };
        ents.push(ent);
        start += len;
    }
    let dest = Tensor::from_slice(&dest).to_device(device);
    let scatter = |vals: Vec<Tensor>| {
        zeros()
            .view([b * r])
            .index_add(0, &dest, &Tensor::cat(&vals, 0))
            .view([b, r])
    };
    Ok(ResponseLogprobs {
        logprobs: scatter(lps),
        entropies: scatter(ents),
        mask,
    })
}
