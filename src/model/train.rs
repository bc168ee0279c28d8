//! The training forward: per-token log-probabilities (with grad) and entropies of the
//! response tokens of (prompt, response) pairs.
//!
//! Two layouts, equal to float rounding: [`response_logprobs`] right-pads rows of
//! `prompt ++ response`; [`packed_response_logprobs`] (the trainer's) packs every
//! sequence of a micro-batch into one row without padding, with each group's prompt
//! computed once when shared. Either way the hidden state before each response token
//! is gathered, and `lm_head` + log-softmax run over at most
//! [`LOGIT_BUDGET`] logits at a time (rows are chunked by `budget / vocab`), so the only
//! full-vocabulary tensors that stay alive are the ones autograd needs: the
//! log-softmax output of each chunk, plus its `exp` when the entropy needs a gradient.

use tch::{Kind, Tensor};

use super::{CausalLm, ModelError, Segment};

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

fn check_options(opts: &LogprobOptions) -> Result<(), ModelError> {
    let t = opts.temperature;
    if !t.is_finite() || t <= 0.0 {
        return Err(ModelError::Input(format!(
            "log-probs: temperature must be > 0, got {t}"
        )));
    }
    Ok(())
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
    if pairs.is_empty() {
        return Err(ModelError::Input("response_logprobs: empty batch".into()));
    }
    check_options(opts)?;
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
    let input = Tensor::from_slice(&ids).view([b, l]).to_device(device);
    let attn = Tensor::from_slice(&valid).view([b, l]).to_device(device);
    let positions = Tensor::arange(l, (Kind::Int64, device))
        .unsqueeze(0)
        .expand([b, l], true);
    let scoring = Scoring {
        source_rows,
        targets,
        dest,
        rows: b,
        width: r,
    };
    scoring.score(
        model,
        || {
            let hidden = model.hidden_states(&input, &positions, &attn, None)?;
            let hsize = hidden.size()[2];
            Ok(hidden.view([b * l, hsize]))
        },
        opts,
    )
}

/// Where each response token's log-prob comes from and goes to.
struct Scoring {
    /// Per response token: the flat position whose hidden state predicts it.
    source_rows: Vec<i64>,
    /// Per response token: its id.
    targets: Vec<i64>,
    /// Per response token: its flat index in the `[rows, width]` output.
    dest: Vec<i64>,
    rows: i64,
    width: i64,
}

impl Scoring {
    /// Runs `forward` (hidden states `[positions, hidden]`; skipped when no response
    /// has a token), applies `lm_head` and the log-softmax to the predicting positions,
    /// at most `opts.logit_budget` logits at a time, and scatters log-probs, entropies
    /// and the mask to `[rows, width]`.
    fn score(
        self,
        model: &dyn CausalLm,
        forward: impl FnOnce() -> Result<Tensor, ModelError>,
        opts: &LogprobOptions,
    ) -> Result<ResponseLogprobs, ModelError> {
        let device = model.device();
        let (b, r) = (self.rows, self.width);
        let mut mask = vec![0f32; (b * r) as usize];
        for &d in &self.dest {
            mask[d as usize] = 1.0;
        }
        let mask = Tensor::from_slice(&mask).view([b, r]).to_device(device);
        let zeros = || Tensor::zeros([b, r], (Kind::Float, device));
        if self.targets.is_empty() {
            return Ok(ResponseLogprobs {
                logprobs: zeros(),
                entropies: zeros(),
                mask,
            });
        }
        let hidden =
            forward()?.index_select(0, &Tensor::from_slice(&self.source_rows).to_device(device));
        let targets = Tensor::from_slice(&self.targets).to_device(device);
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
                / opts.temperature;
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
        let dest = Tensor::from_slice(&self.dest).to_device(device);
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
}

/// One prompt and responses to it, for [`packed_response_logprobs`].
#[derive(Debug, Clone)]
pub struct PackedItem<'a> {
    /// The prompt's ids (non-empty).
    pub prompt: &'a [i64],
    /// The responses (any may be empty); output rows follow this order.
    pub responses: Vec<&'a [i64]>,
}

/// [`response_logprobs`] without padding: every response of `items` is packed into one
/// row, position ids restarting per sequence and attention never crossing sequences.
/// With `share_prompt`, each item's prompt is computed once and its responses attend
/// to it (gradients flow back to the one copy); otherwise every response gets its own
/// copy of the prompt. Output rows are the responses in order (item by item), `[N, R]`
/// with `R` the longest response; values equal the padded ones up to float rounding.
pub fn packed_response_logprobs(
    model: &dyn CausalLm,
    items: &[PackedItem],
    share_prompt: bool,
    opts: &LogprobOptions,
) -> Result<ResponseLogprobs, ModelError> {
    check_options(opts)?;
    let rows: i64 = items.iter().map(|it| it.responses.len() as i64).sum();
    if rows == 0 {
        return Err(ModelError::Input(
            "packed_response_logprobs: no responses".into(),
        ));
    }
    let width = items
        .iter()
        .flat_map(|it| it.responses.iter().map(|r| r.len()))
        .max()
        .unwrap_or(0) as i64;
    let mut row = Packer::default();
    let mut scoring = Scoring {
        source_rows: Vec::new(),
        targets: Vec::new(),
        dest: Vec::new(),
        rows,
        width,
    };
    let mut out_row = 0i64;
    for (index, item) in items.iter().enumerate() {
        if item.prompt.is_empty() {
            return Err(ModelError::Input(format!(
                "packed_response_logprobs: prompt {index} is empty"
            )));
        }
        let p = item.prompt.len() as i64;
        let shared = (share_prompt && item.responses.iter().any(|r| !r.is_empty()))
            .then(|| row.push(item.prompt, None));
        for resp in &item.responses {
            if !resp.is_empty() {
                // The hidden state before response token 0 is the prompt's last one.
                let (last_prompt, resp_start) = match shared {
                    Some(prompt) => {
                        let segment = row.push(resp, Some((prompt, p)));
                        (
                            row.segments[prompt].start + p - 1,
                            row.segments[segment].start,
                        )
                    }
                    None => {
                        let joined: Vec<i64> =
                            item.prompt.iter().chain(resp.iter()).copied().collect();
                        let segment = row.push(&joined, None);
                        let start = row.segments[segment].start;
                        (start + p - 1, start + p)
                    }
                };
                for (j, &tok) in resp.iter().enumerate() {
                    let j = j as i64;
                    let source = if j == 0 {
                        last_prompt
                    } else {
                        resp_start + j - 1
                    };
                    scoring.source_rows.push(source);
                    scoring.targets.push(tok);
                    scoring.dest.push(out_row * width + j);
                }
            }
            out_row += 1;
        }
    }
    let device = model.device();
    scoring.score(
        model,
        || {
            model.packed_hidden_states(
                &Tensor::from_slice(&row.ids).to_device(device),
                &Tensor::from_slice(&row.positions).to_device(device),
                &row.segments,
            )
        },
        opts,
    )
}

/// A packed row being laid out: ids, position ids and segments.
#[derive(Default)]
struct Packer {
    ids: Vec<i64>,
    positions: Vec<i64>,
    segments: Vec<Segment>,
}

impl Packer {
    /// Appends `tokens` as a new segment; with `prefix = (segment, its length)` the
    /// segment sees that one and its positions continue after it. Returns its index.
    fn push(&mut self, tokens: &[i64], prefix: Option<(usize, i64)>) -> usize {
        let first_position = prefix.map_or(0, |(_, len)| len);
        self.segments.push(Segment {
            start: self.ids.len() as i64,
            len: tokens.len() as i64,
            prefix: prefix.map(|(segment, _)| segment),
        });
        self.ids.extend_from_slice(tokens);
        self.positions
            .extend((0..tokens.len() as i64).map(|j| first_position + j));
        self.segments.len() - 1
    }
}
