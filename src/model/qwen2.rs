//! Qwen2 / Qwen2.5 and Llama 2/3 decoder, one implementation selected by
//! [`Qwen2Config`]: q/k/v (and Llama o_proj) bias, tied embeddings, grouped-query
//! attention, RoPE theta and Llama-3 / linear RoPE scaling, RMSNorm epsilon.
//!
//! Module and variable names equal the Hugging Face weight names
//! (`model.layers.0.self_attn.q_proj.weight`, `lm_head.weight`, ...), so the
//! [`nn::VarStore`] maps one-to-one onto `model.safetensors`. The arithmetic follows
//! transformers' `modeling_qwen2.py` / `modeling_llama.py` (RMSNorm in f32, RoPE
//! cos/sin in f32 cast to the model dtype, additive attention mask of the dtype's
//! minimum).

use tch::{Device, Kind, Tensor, nn};

use super::config::Qwen2Config;
use super::lora::{self, Adapter, LoraConfig, LoraInfo, TrainSwitch};
use super::weights::{Init, WeightSource};
use super::{CausalLm, KvCache, LayerCheckpoints, ModelError, Segment, check_segments};

/// How the queries of a forward may attend.
enum AttentionMask {
    /// Padded batch: an additive bias `[B, 1, T, S]` (causal and padding).
    Bias(Tensor),
    /// One packed row: per segment, its query range, the key ranges it sees and the
    /// additive bias over them (`None`: plain causal over its own keys).
    Segments(Vec<SegmentAttention>),
}

/// The attention pattern of one segment of a packed row.
struct SegmentAttention {
    queries: (i64, i64),
    /// `(start, len)` key ranges, concatenated: the prefix (if any), then the segment.
    keys: Vec<(i64, i64)>,
    bias: Option<Tensor>,
}

/// A linear layer `y = x Wᵀ + b` with HF layout (`weight` `[out, in]`, optional `bias`),
/// optionally with a LoRA adapter ([`lora`]).
#[derive(Debug)]
struct Linear {
    /// The module's Hugging Face name (`model.layers.0.self_attn.q_proj`).
    name: String,
    weight: Tensor,
    bias: Option<Tensor>,
    adapter: Option<Adapter>,
}

impl Linear {
    fn new(
        p: &nn::Path,
        src: &mut dyn WeightSource,
        in_dim: i64,
        out_dim: i64,
        bias: bool,
    ) -> Result<Self, ModelError> {
        let weight = param(p, "weight", &[out_dim, in_dim], Init::Normal, src)?;
        let bias = if bias {
            Some(param(p, "bias", &[out_dim], Init::Zeros, src)?)
        } else {
            None
        };
        let full = p.path("weight");
        let name = full.strip_suffix(".weight").unwrap_or(&full).to_string();
        Ok(Linear {
            name,
            weight,
            bias,
            adapter: None,
        })
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        match &self.adapter {
            None => x.linear(&self.weight, self.bias.as_ref()),
            Some(a) => a.forward(x, &self.weight, self.bias.as_ref()),
        }
    }
}

/// RMSNorm computed in f32 and cast back, as transformers does.
#[derive(Debug)]
struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn new(
        p: &nn::Path,
        src: &mut dyn WeightSource,
        dim: i64,
        eps: f64,
    ) -> Result<Self, ModelError> {
        Ok(RmsNorm {
            weight: param(p, "weight", &[dim], Init::Ones, src)?,
            eps,
        })
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        let xf = x.to_kind(Kind::Float);
        let var = xf.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
        let normed = xf * (var + self.eps).rsqrt();
        &self.weight * normed.to_kind(kind)
    }
}

#[derive(Debug)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    num_heads: i64,
    num_kv_heads: i64,
    head_dim: i64,
}

impl Attention {
    fn new(
        p: &nn::Path,
        src: &mut dyn WeightSource,
        cfg: &Qwen2Config,
    ) -> Result<Self, ModelError> {
        let h = cfg.hidden_size;
        let (nh, nkv, hd) = (cfg.num_attention_heads, cfg.num_kv_heads(), cfg.head_dim());
        Ok(Attention {
            q_proj: Linear::new(&(p / "q_proj"), src, h, nh * hd, cfg.qkv_bias())?,
            k_proj: Linear::new(&(p / "k_proj"), src, h, nkv * hd, cfg.qkv_bias())?,
            v_proj: Linear::new(&(p / "v_proj"), src, h, nkv * hd, cfg.qkv_bias())?,
            o_proj: Linear::new(&(p / "o_proj"), src, nh * hd, h, cfg.o_bias())?,
            num_heads: nh,
            num_kv_heads: nkv,
            head_dim: hd,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        rope: &(Tensor, Tensor),
        mask: &AttentionMask,
        cache: Option<(&mut KvCache, usize)>,
    ) -> Tensor {
        let (b, t) = (x.size()[0], x.size()[1]);
        let q = self
            .q_proj
            .forward(x)
            .view([b, t, self.num_heads, self.head_dim])
            .transpose(1, 2);
        let k = self
            .k_proj
            .forward(x)
            .view([b, t, self.num_kv_heads, self.head_dim])
            .transpose(1, 2);
        let v = self
            .v_proj
            .forward(x)
            .view([b, t, self.num_kv_heads, self.head_dim])
            .transpose(1, 2);
        let (cos, sin) = rope;
        let q = &q * cos + rotate_half(&q) * sin;
        let k = &k * cos + rotate_half(&k) * sin;
        let (k, v) = match cache {
            Some((cache, layer)) => cache.append(layer, &k, &v),
            None => (k, v),
        };
        let gqa = self.num_heads != self.num_kv_heads;
        let out = match mask {
            AttentionMask::Bias(bias) => {
                Tensor::scaled_dot_product_attention(&q, &k, &v, Some(bias), 0.0, false, None, gqa)
            }
            AttentionMask::Segments(segments) => {
                let parts: Vec<Tensor> = segments
                    .iter()
                    .map(|s| {
                        let gather = |x: &Tensor| {
                            let pieces: Vec<Tensor> =
                                s.keys.iter().map(|&(a, n)| x.narrow(2, a, n)).collect();
                            Tensor::cat(&pieces, 2)
                        };
                        Tensor::scaled_dot_product_attention(
                            &q.narrow(2, s.queries.0, s.queries.1),
                            &gather(&k),
                            &gather(&v),
                            s.bias.as_ref(),
                            0.0,
                            s.bias.is_none(),
                            None,
                            gqa,
                        )
                    })
                    .collect();
                Tensor::cat(&parts, 2)
            }
        };
        self.o_proj.forward(
            &out.transpose(1, 2)
                .reshape([b, t, self.num_heads * self.head_dim]),
        )
    }
}

fn rotate_half(x: &Tensor) -> Tensor {
    let d = x.size()[3] / 2;
    Tensor::cat(&[-x.narrow(3, d, d), x.narrow(3, 0, d)], 3)
}

#[derive(Debug)]
struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    fn new(
        p: &nn::Path,
        src: &mut dyn WeightSource,
        cfg: &Qwen2Config,
    ) -> Result<Self, ModelError> {
        let (h, i, b) = (cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias);
        Ok(Mlp {
            gate_proj: Linear::new(&(p / "gate_proj"), src, h, i, b)?,
            up_proj: Linear::new(&(p / "up_proj"), src, h, i, b)?,
            down_proj: Linear::new(&(p / "down_proj"), src, i, h, b)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        self.down_proj
            .forward(&(self.gate_proj.forward(x).silu() * self.up_proj.forward(x)))
    }
}

#[derive(Debug)]
struct DecoderLayer {
    self_attn: Attention,
    mlp: Mlp,
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
}

impl DecoderLayer {
    fn new(
        p: &nn::Path,
        src: &mut dyn WeightSource,
        cfg: &Qwen2Config,
    ) -> Result<Self, ModelError> {
        let (h, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        Ok(DecoderLayer {
            self_attn: Attention::new(&(p / "self_attn"), src, cfg)?,
            mlp: Mlp::new(&(p / "mlp"), src, cfg)?,
            input_layernorm: RmsNorm::new(&(p / "input_layernorm"), src, h, eps)?,
            post_attention_layernorm: RmsNorm::new(&(p / "post_attention_layernorm"), src, h, eps)?,
        })
    }

    /// The layer's output (residual stream in, residual stream out).
    fn forward(
        &self,
        x: &Tensor,
        rope: &(Tensor, Tensor),
        mask: &AttentionMask,
        cache: Option<(&mut KvCache, usize)>,
    ) -> Tensor {
        let h = self
            .self_attn
            .forward(&self.input_layernorm.forward(x), rope, mask, cache);
        let x = x + h; // not `+=`: autograd needs the pre-residual `x` (RMSNorm input)
        let h = self.mlp.forward(&self.post_attention_layernorm.forward(&x));
        &x + h
    }
}

/// The Qwen2 / Llama causal LM (`Qwen2ForCausalLM` / `LlamaForCausalLM`).
pub struct Qwen2 {
    vs: nn::VarStore,
    config: Qwen2Config,
    embed_tokens: Tensor,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    /// `lm_head.weight`, or `model.embed_tokens.weight` when the embeddings are tied.
    lm_head: Tensor,
    inv_freq: Tensor,
    /// The attached LoRA adapters' configuration, if any.
    lora: Option<LoraInfo>,
    /// On during the trainer's training forward (adapter dropout).
    train: TrainSwitch,
}

impl std::fmt::Debug for Qwen2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qwen2")
            .field("config", &self.config)
            .field("device", &self.vs.device())
            .finish()
    }
}

impl Qwen2 {
    /// Builds the model from `config`, taking every parameter (by its Hugging Face name)
    /// from `src`: a safetensors checkpoint or a seeded random initialisation.
    pub fn new(
        config: &Qwen2Config,
        src: &mut dyn WeightSource,
        kind: Kind,
        device: Device,
    ) -> Result<Self, ModelError> {
        let mut vs = nn::VarStore::new(device);
        vs.set_kind(kind);
        let root = vs.root();
        let m = &root / "model";
        let embed_tokens = param(
            &(&m / "embed_tokens"),
            "weight",
            &[config.vocab_size, config.hidden_size],
            Init::Normal,
            src,
        )?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers as usize);
        for i in 0..config.num_hidden_layers {
            layers.push(DecoderLayer::new(&(&m / "layers" / i), src, config)?);
        }
        let norm = RmsNorm::new(&(&m / "norm"), src, config.hidden_size, config.rms_norm_eps)?;
        let lm_head = if config.tie_word_embeddings {
            embed_tokens.shallow_clone()
        } else {
            param(
                &(&root / "lm_head"),
                "weight",
                &[config.vocab_size, config.hidden_size],
                Init::Normal,
                src,
            )?
        };
        let inv_freq = Tensor::from_slice(&config.inv_freq()).to_device(device);
        Ok(Qwen2 {
            vs,
            config: config.clone(),
            embed_tokens,
            layers,
            norm,
            lm_head,
            inv_freq,
            lora: None,
            train: TrainSwitch::default(),
        })
    }

    /// Every projection of every layer, in layer order (q, k, v, o, gate, up, down).
    fn linears(&self) -> impl Iterator<Item = &Linear> {
        self.layers.iter().flat_map(|l| {
            let (a, m) = (&l.self_attn, &l.mlp);
            [
                &a.q_proj,
                &a.k_proj,
                &a.v_proj,
                &a.o_proj,
                &m.gate_proj,
                &m.up_proj,
                &m.down_proj,
            ]
        })
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &Qwen2Config {
        &self.config
    }

    /// RoPE cos/sin `[B, 1, T, head_dim]` for `position_ids` `[B, T]`, in f32 then cast.
    fn rope(&self, position_ids: &Tensor) -> (Tensor, Tensor) {
        let kind = self.kind();
        let freqs =
            position_ids.to_kind(Kind::Float).unsqueeze(-1) * self.inv_freq.view([1, 1, -1]);
        let emb = Tensor::cat(&[&freqs, &freqs], -1).unsqueeze(1);
        (emb.cos().to_kind(kind), emb.sin().to_kind(kind))
    }

    /// Additive attention bias `[B, 1, T, S]`: 0 where a query may attend (causal and
    /// key not padding), the dtype's minimum elsewhere (transformers' convention, which
    /// keeps fully padded query rows finite).
    fn attention_bias(&self, attention_mask: &Tensor, t: i64, past: i64) -> Tensor {
        let device = self.device();
        let (b, s) = (attention_mask.size()[0], attention_mask.size()[1]);
        let keys = attention_mask
            .to_device(device)
            .to_kind(Kind::Bool)
            .view([b, 1, 1, s]);
        let key_pos = Tensor::arange(s, (Kind::Int64, device)).view([1, 1, 1, s]);
        let query_pos = (Tensor::arange(t, (Kind::Int64, device)) + past).view([1, 1, t, 1]);
        let allowed = key_pos.le_tensor(&query_pos).logical_and(&keys);
        Tensor::zeros([b, 1, t, s], (self.kind(), device))
            .masked_fill(&allowed.logical_not(), self.mask_min())
    }

    /// The additive bias of a masked-out key: the dtype's minimum (transformers').
    fn mask_min(&self) -> f64 {
        match self.kind() {
            Kind::Half => -65504.0,
            Kind::BFloat16 => -3.389_531_389_251_535_5e38,
            _ => f32::MIN as f64,
        }
    }

    /// The attention pattern of a packed row: a segment without prefix is causal over
    /// its own keys; one with a prefix sees all the prefix's keys, then its own
    /// causally.
    fn segment_attention(&self, segments: &[Segment]) -> AttentionMask {
        let device = self.device();
        AttentionMask::Segments(
            segments
                .iter()
                .map(|s| {
                    let own = (s.start, s.len);
                    match s.prefix {
                        None => SegmentAttention {
                            queries: own,
                            keys: vec![own],
                            bias: None,
                        },
                        Some(p) => {
                            let p = segments[p];
                            let key =
                                Tensor::arange(p.len + s.len, (Kind::Int64, device)).view([1, -1]);
                            let query =
                                Tensor::arange(s.len, (Kind::Int64, device)).view([-1, 1]) + p.len;
                            let bias = Tensor::zeros([s.len, p.len + s.len], (self.kind(), device))
                                .masked_fill(&key.gt_tensor(&query), self.mask_min());
                            SegmentAttention {
                                queries: own,
                                keys: vec![(p.start, p.len), own],
                                bias: Some(bias),
                            }
                        }
                    }
                })
                .collect(),
        )
    }

    /// Checks ids against the vocabulary and looks up their embeddings.
    fn embed(&self, ids: &Tensor) -> Result<Tensor, ModelError> {
        let (lo, hi) = (ids.min().int64_value(&[]), ids.max().int64_value(&[]));
        if lo < 0 || hi >= self.config.vocab_size {
            return Err(ModelError::Input(format!(
                "token ids must lie in [0, {}), got [{lo}, {hi}]",
                self.config.vocab_size
            )));
        }
        Ok(Tensor::embedding(&self.embed_tokens, ids, -1, false, false))
    }

    /// Runs embedding, decoder layers and the final norm.
    fn run_layers(
        &self,
        ids: &Tensor,
        position_ids: &Tensor,
        mask: &AttentionMask,
        mut cache: Option<&mut KvCache>,
    ) -> Result<Tensor, ModelError> {
        let rope = self.rope(&position_ids.to_device(self.device()));
        let mut x = self.embed(ids)?;
        let seeds = self.dropout_seeds();
        for (i, layer) in self.layers.iter().enumerate() {
            seed_dropout(&seeds, i);
            x = layer.forward(&x, &rope, mask, cache.as_deref_mut().map(|c| (c, i)));
        }
        Ok(self.norm.forward(&x))
    }

    /// While adapter dropout is active (LoRA with dropout, training switch on), one seed
    /// per decoder layer drawn from libtorch's generator: each layer's masks are drawn
    /// from its own seed, so activation checkpointing's recomputation of a layer draws
    /// the masks its first pass drew (and the plain forward draws the same ones).
    fn dropout_seeds(&self) -> Option<Vec<i64>> {
        let active =
            self.train.is_on() && self.lora.as_ref().is_some_and(|l| l.config.dropout > 0.0);
        active.then(|| {
            let draws = Tensor::randint(
                i64::MAX,
                [self.layers.len() as i64],
                (Kind::Int64, Device::Cpu),
            );
            Vec::<i64>::try_from(draws).expect("an i64 tensor converts")
        })
    }

    /// Checks a packed row's shapes and segments; returns its ids `[1, T]` on the
    /// model's device and its attention pattern.
    fn packed_inputs(
        &self,
        input_ids: &Tensor,
        position_ids: &Tensor,
        segments: &[Segment],
    ) -> Result<(Tensor, AttentionMask), ModelError> {
        let dims = input_ids.size();
        if dims.len() != 1 || position_ids.size() != dims {
            return Err(ModelError::Input(format!(
                "packed input_ids {dims:?} and position_ids {:?} must both be [T]",
                position_ids.size()
            )));
        }
        check_segments(segments, dims[0])?;
        let ids = input_ids.to_device(self.device()).unsqueeze(0);
        Ok((ids, self.segment_attention(segments)))
    }
}

impl CausalLm for Qwen2 {
    fn hidden_states(
        &self,
        input_ids: &Tensor,
        position_ids: &Tensor,
        attention_mask: &Tensor,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor, ModelError> {
        let dims = input_ids.size();
        if dims.len() != 2 {
            return Err(ModelError::Input(format!(
                "input_ids must be [B, T], got {dims:?}"
            )));
        }
        let (b, t) = (dims[0], dims[1]);
        if position_ids.size() != dims {
            return Err(ModelError::Input(format!(
                "position_ids {:?} must match input_ids {dims:?}",
                position_ids.size()
            )));
        }
        let past = cache.as_ref().map_or(0, |c| c.len());
        if let Some(c) = cache.as_ref()
            && !c.is_empty()
            && c.batch() != b
        {
            return Err(ModelError::Input(format!(
                "KV cache holds {} rows, input has {b}",
                c.batch()
            )));
        }
        if attention_mask.size() != [b, past + t] {
            return Err(ModelError::Input(format!(
                "attention_mask {:?} must be [B, cached + T] = [{b}, {}]",
                attention_mask.size(),
                past + t
            )));
        }
        let ids = input_ids.to_device(self.device());
        let mask = AttentionMask::Bias(self.attention_bias(attention_mask, t, past));
        let mut cache = cache;
        let hidden = self.run_layers(&ids, position_ids, &mask, cache.as_deref_mut())?;
        if let Some(c) = cache {
            c.advance(t);
        }
        Ok(hidden)
    }

    fn packed_hidden_states(
        &self,
        input_ids: &Tensor,
        position_ids: &Tensor,
        segments: &[Segment],
    ) -> Result<Tensor, ModelError> {
        let (ids, mask) = self.packed_inputs(input_ids, position_ids, segments)?;
        let hidden = self.run_layers(&ids, &position_ids.unsqueeze(0), &mask, None)?;
        Ok(hidden.squeeze_dim(0))
    }

    fn checkpointed_hidden_states(
        &self,
        input_ids: &Tensor,
        position_ids: &Tensor,
        segments: &[Segment],
    ) -> Result<(Tensor, LayerCheckpoints<'_>), ModelError> {
        let (ids, mask) = self.packed_inputs(input_ids, position_ids, segments)?;
        let rope = self.rope(&position_ids.unsqueeze(0).to_device(self.device()));
        let embedded = self.embed(&ids)?;
        let mut inputs = Vec::with_capacity(self.layers.len());
        let mut x = embedded.detach();
        let seeds = self.dropout_seeds();
        {
            let _no_grad = tch::no_grad_guard();
            for (i, layer) in self.layers.iter().enumerate() {
                seed_dropout(&seeds, i);
                let out = layer.forward(&x, &rope, &mask, None);
                inputs.push(x);
                x = out;
            }
        }
        let top = x.set_requires_grad(true);
        let hidden = self.norm.forward(&top).squeeze_dim(0);
        let layer = Box::new(move |i: usize, x: &Tensor| {
            seed_dropout(&seeds, i);
            self.layers[i].forward(x, &rope, &mask, None)
        });
        Ok((hidden, LayerCheckpoints::new(inputs, embedded, top, layer)))
    }

    fn logits(&self, hidden: &Tensor) -> Tensor {
        hidden.linear(&self.lm_head, None::<&Tensor>)
    }

    fn new_cache(&self, batch: i64, capacity: i64) -> KvCache {
        KvCache::new(
            self.layers.len(),
            [
                batch,
                self.config.num_kv_heads(),
                capacity.max(1),
                self.config.head_dim(),
            ],
            self.kind(),
            self.device(),
        )
    }

    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn attach_lora(&mut self, config: &LoraConfig, base_model: &str) -> Result<(), ModelError> {
        config
            .validate()
            .map_err(|e| ModelError::Input(e.to_string()))?;
        if self.lora.is_some() {
            return Err(ModelError::Input(
                "LoRA adapters are already attached".into(),
            ));
        }
        self.vs.freeze();
        let root = self.vs.root();
        let mut rng = lora::init_rng(config);
        let mut count = 0;
        for layer in &mut self.layers {
            let (a, m) = (&mut layer.self_attn, &mut layer.mlp);
            for lin in [
                &mut a.q_proj,
                &mut a.k_proj,
                &mut a.v_proj,
                &mut a.o_proj,
                &mut m.gate_proj,
                &mut m.up_proj,
                &mut m.down_proj,
            ] {
                if config.targets_module(&lin.name) {
                    let (out_dim, in_dim) = (lin.weight.size()[0], lin.weight.size()[1]);
                    lin.adapter = Some(Adapter::new(
                        &root,
                        &lin.name,
                        (in_dim, out_dim),
                        config,
                        &self.train,
                        &mut rng,
                    )?);
                    count += 1;
                }
            }
        }
        if count == 0 {
            return Err(ModelError::Input(format!(
                "model.lora.targets: {:?} match no projection of the model",
                config.targets
            )));
        }
        self.lora = Some(LoraInfo {
            config: config.clone(),
            base_model: base_model.to_string(),
        });
        Ok(())
    }

    fn lora(&self) -> Option<&LoraInfo> {
        self.lora.as_ref()
    }

    fn train_switch(&self) -> TrainSwitch {
        self.train.clone()
    }

    fn set_adapters_merged(&self, on: bool) {
        for lin in self.linears() {
            if let Some(a) = &lin.adapter {
                a.set_merged(&lin.weight, on);
            }
        }
    }

    fn set_adapters_off(&self, on: bool) {
        for lin in self.linears() {
            if let Some(a) = &lin.adapter {
                a.set_off(&lin.weight, on);
            }
        }
    }

    fn var_store_mut(&mut self) -> &mut nn::VarStore {
        &mut self.vs
    }

    fn vocab_size(&self) -> i64 {
        self.config.vocab_size
    }

    fn device(&self) -> Device {
        self.vs.device()
    }

    fn kind(&self) -> Kind {
        self.embed_tokens.kind()
    }
}

/// Seeds libtorch's generator for layer `layer`'s dropout masks (see
/// [`Qwen2::dropout_seeds`]); nothing without seeds.
fn seed_dropout(seeds: &Option<Vec<i64>>, layer: usize) {
    if let Some(seeds) = seeds {
        tch::manual_seed(seeds[layer]);
    }
}

/// Takes parameter `name` under `p` from `src` and registers it (trainable) in the var
/// store under its Hugging Face name.
fn param(
    p: &nn::Path,
    name: &str,
    shape: &[i64],
    init: Init,
    src: &mut dyn WeightSource,
) -> Result<Tensor, ModelError> {
    let full = p.path(name);
    let t = src.tensor(&full, shape, init, p.kind(), p.device())?;
    Ok(p.add(name, t, true))
}
