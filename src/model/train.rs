//! The training forward: per-token log-probabilities (with grad) and entropies of the
//! response tokens of (prompt, response) pairs.
//!
//! Two layouts, equal to float rounding: [`response_logprobs`] right-pads rows of
//! `prompt ++ response`; [`packed_response_logprobs`] (the trainer's) packs every
//! sequence of a micro-batch into one row without padding, with each group's prompt
//! computed once when shared. Either way the hidden state before each response token
//! is gathered, and `lm_head` + log-softmax run over at most [`LOGIT_BUDGET`] logits
//! at a time (rows are chunked by `budget / vocab`).
//!
//! Two memory switches ([`LogprobOptions`]), each exact:
//! - `recompute_logits`: the chunks run without autograd and keep nothing of the
//!   vocabulary; the backward recomputes each chunk's logits from its hidden states
//!   (one chunk at a time). Without it, autograd keeps each chunk's full-vocabulary
//!   log-softmax (and its `exp` when the entropy needs a gradient) until the backward.
//! - `activation_checkpointing` (packed layout): only each decoder layer's input is kept
//!   and the layers are recomputed one at a time in the backward
//!   ([`CausalLm::checkpointed_hidden_states`]).
//!
//! Either way the caller back-propagates through [`ResponseLogprobs::backward`], never
//! `loss.backward()` directly: with either switch the graph stops at the returned
//! tensors.

use tch::{Kind, Tensor};

use super::{CausalLm, LayerCheckpoints, ModelError, Segment};

/// Upper bound on the logits materialised at once (rows × vocab) by
/// [`response_logprobs`]: 2²² f32 values = 16 MiB per chunk.
pub const LOGIT_BUDGET: i64 = 1 << 22;

/// Output of [`response_logprobs`], every tensor `[B, R]` with `R` the longest response.
pub struct ResponseLogprobs<'a> {
    /// log π(token) under `softmax(logits / temperature)`, f32, with grad; 0 on padding.
    pub logprobs: Tensor,
    /// Entropy of `softmax(logits / temperature)` at each response position, f32; with
    /// grad only when asked for; 0 on padding.
    pub entropies: Tensor,
    /// 1.0 on response tokens, 0.0 on padding, f32.
    pub mask: Tensor,
    backward: Backward<'a>,
}

impl std::fmt::Debug for ResponseLogprobs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseLogprobs")
            .field("logprobs", &self.logprobs)
            .field("entropies", &self.entropies)
            .field("mask", &self.mask)
            .finish_non_exhaustive()
    }
}

impl ResponseLogprobs<'_> {
    /// Back-propagates `loss` (computed from these log-probs and entropies) into the
    /// model's parameters, through the recomputed logit chunks and decoder layers when
    /// the forward did not keep them. Use it instead of `loss.backward()`.
    pub fn backward(self, loss: &Tensor) {
        self.backward.run(loss);
    }
}

/// The backward of a training forward (see [`ResponseLogprobs::backward`]): the loss's
/// own backward, then the LM-head chunks recomputed (with `recompute_logits`), then
/// the decoder layers recomputed (with activation checkpointing).
pub struct Backward<'a> {
    head: Option<HeadRecompute<'a>>,
    layers: Option<LayerCheckpoints<'a>>,
}

impl Backward<'_> {
    fn run(self, loss: &Tensor) {
        loss.backward();
        if let Some(head) = self.head {
            head.backward();
        }
        if let Some(layers) = self.layers {
            layers.backward();
        }
    }
}

/// What the backward needs to recompute the LM head chunk by chunk: the gathered
/// hidden states (with their graph), the targets, and the leaves that stood in for the
/// log-probs and entropies in the loss.
struct HeadRecompute<'a> {
    model: &'a dyn CausalLm,
    hidden: Tensor,
    targets: Tensor,
    chunk: i64,
    temperature: f64,
    logprobs: Tensor,
    entropies: Option<Tensor>,
}

impl HeadRecompute<'_> {
    /// Turns the gradients on the log-prob (and entropy) leaves into the gradient of
    /// the hidden states, one chunk of recomputed logits at a time (the `lm_head`
    /// gradient accumulates on the way), then back-propagates that into the model.
    fn backward(self) {
        let grad_logp = self.logprobs.grad();
        let grad_ent = self.entropies.as_ref().map(Tensor::grad);
        let grad_ent = grad_ent.filter(Tensor::defined);
        if !grad_logp.defined() && grad_ent.is_none() {
            return;
        }
        let n = self.targets.size()[0];
        let mut grads = Vec::new();
        let mut start = 0;
        while start < n {
            let len = self.chunk.min(n - start);
            let h = self
                .hidden
                .narrow(0, start, len)
                .detach()
                .set_requires_grad(true);
            let targets = self.targets.narrow(0, start, len);
            let (logp, ent) = head_chunk(
                self.model,
                &h,
                &targets,
                self.temperature,
                grad_ent.is_some(),
            );
            let mut surrogate = Tensor::zeros([], (Kind::Float, h.device()));
            if grad_logp.defined() {
                surrogate += (logp * grad_logp.narrow(0, start, len)).sum(Kind::Float);
            }
            if let Some(g) = &grad_ent {
                surrogate += (ent * g.narrow(0, start, len)).sum(Kind::Float);
            }
            surrogate.backward();
            grads.push(h.grad());
            start += len;
        }
        (self.hidden * Tensor::cat(&grads, 0))
            .sum(Kind::Float)
            .backward();
    }
}

/// Log-probs of `targets` and entropies `[rows]` (f32) of one chunk of hidden states,
/// in the current grad mode; the entropy with a graph only when `entropy_grad`.
fn head_chunk(
    model: &dyn CausalLm,
    hidden: &Tensor,
    targets: &Tensor,
    temperature: f64,
    entropy_grad: bool,
) -> (Tensor, Tensor) {
    let logits = model.logits(hidden).to_kind(Kind::Float) / temperature;
    let logp = logits.log_softmax(-1, Kind::Float);
    let picked = logp.gather(1, &targets.unsqueeze(1), false).squeeze_dim(1);
    let ent = if entropy_grad {
        -(logp.exp() * &logp).sum_dim_intlist(-1, false, Kind::Float)
    } else {
        let _no_grad = tch::no_grad_guard();
        let lp = logp.detach();
        -(lp.exp() * &lp).sum_dim_intlist(-1, false, Kind::Float)
    };
    (picked, ent)
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
    /// Keep no logits for the backward; recompute them chunk by chunk there (see the
    /// module docs). Only matters with grad on.
    pub recompute_logits: bool,
    /// Keep only each decoder layer's input and recompute the layers in the backward
    /// (packed layout only). Only matters with grad on.
    pub activation_checkpointing: bool,
}

impl Default for LogprobOptions {
    fn default() -> Self {
        LogprobOptions {
            temperature: 1.0,
            entropy_grad: false,
            logit_budget: LOGIT_BUDGET,
            recompute_logits: false,
            activation_checkpointing: false,
        }
    }
}

/// Whether autograd records operations on this thread now (tch exposes no query).
fn grad_enabled() -> bool {
    (Tensor::ones([1], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true) * 1.0)
        .requires_grad()
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
pub fn response_logprobs<'a>(
    model: &'a dyn CausalLm,
    pairs: &[(&[i64], &[i64])],
    pad_id: i64,
    opts: &LogprobOptions,
) -> Result<ResponseLogprobs<'a>, ModelError> {
    if pairs.is_empty() {
        return Err(ModelError::Input("response_logprobs: empty batch".into()));
    }
    check_options(opts)?;
    if opts.activation_checkpointing {
        return Err(ModelError::Input(
            "response_logprobs: activation checkpointing needs the packed layout \
             (packed_response_logprobs)"
                .into(),
        ));
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
            Ok((hidden.view([b * l, hsize]), None))
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
    /// Runs `forward` (hidden states `[positions, hidden]`, and the layer checkpoints
    /// when it kept only those; skipped when no response has a token), applies
    /// `lm_head` and the log-softmax to the predicting positions, at most
    /// `opts.logit_budget` logits at a time, and scatters log-probs, entropies and the
    /// mask to `[rows, width]`.
    fn score<'a>(
        self,
        model: &'a dyn CausalLm,
        forward: impl FnOnce() -> Result<(Tensor, Option<LayerCheckpoints<'a>>), ModelError>,
        opts: &LogprobOptions,
    ) -> Result<ResponseLogprobs<'a>, ModelError> {
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
                backward: Backward {
                    head: None,
                    layers: None,
                },
            });
        }
        let (hidden, layers) = forward()?;
        let hidden =
            hidden.index_select(0, &Tensor::from_slice(&self.source_rows).to_device(device));
        let targets = Tensor::from_slice(&self.targets).to_device(device);
        let n = targets.size()[0];
        let chunk = (opts.logit_budget / model.vocab_size()).max(1);
        let recompute = opts.recompute_logits && grad_enabled();
        let (mut lps, mut ents) = (Vec::new(), Vec::new());
        {
            let _no_grad = recompute.then(tch::no_grad_guard);
            let mut start = 0;
            while start < n {
                let len = chunk.min(n - start);
                let (lp, ent) = head_chunk(
                    model,
                    &hidden.narrow(0, start, len),
                    &targets.narrow(0, start, len),
                    opts.temperature,
                    opts.entropy_grad,
                );
                lps.push(lp);
                ents.push(ent);
                start += len;
            }
        }
        let (mut logprobs, mut entropies) = (Tensor::cat(&lps, 0), Tensor::cat(&ents, 0));
        let head = recompute.then(|| {
            logprobs = logprobs.set_requires_grad(true);
            if opts.entropy_grad {
                entropies = entropies.set_requires_grad(true);
            }
            HeadRecompute {
                model,
                hidden,
                targets,
                chunk,
                temperature: opts.temperature,
                logprobs: logprobs.shallow_clone(),
                entropies: opts.entropy_grad.then(|| entropies.shallow_clone()),
            }
        });
        let dest = Tensor::from_slice(&self.dest).to_device(device);
        let scatter = |vals: &Tensor| zeros().view([b * r]).index_add(0, &dest, vals).view([b, r]);
        Ok(ResponseLogprobs {
            logprobs: scatter(&logprobs),
            entropies: scatter(&entropies),
            mask,
            backward: Backward { head, layers },
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
pub fn packed_response_logprobs<'a>(
    model: &'a dyn CausalLm,
    items: &[PackedItem],
    share_prompt: bool,
    opts: &LogprobOptions,
) -> Result<ResponseLogprobs<'a>, ModelError> {
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
    let checkpointing = opts.activation_checkpointing && grad_enabled();
    scoring.score(
        model,
        || {
            let ids = Tensor::from_slice(&row.ids).to_device(device);
            let positions = Tensor::from_slice(&row.positions).to_device(device);
            if checkpointing {
                let (hidden, layers) =
                    model.checkpointed_hidden_states(&ids, &positions, &row.segments)?;
                Ok((hidden, Some(layers)))
            } else {
                Ok((
                    model.packed_hidden_states(&ids, &positions, &row.segments)?,
                    None,
                ))
            }
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
