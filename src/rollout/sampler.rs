//! The sampling rule of one decoding step, in transformers' order: `logits /
//! temperature`, then top-k, then top-p on the renormalised remainder, then an exact
//! inverse-CDF draw. `temperature = 0` means greedy.

use super::SamplingConfig;
use tch::{Kind, Tensor};

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
