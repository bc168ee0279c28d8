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
    let ent = -row_sums(&(logp.exp() * &logp), false);
    let lp = logp.gather(1, &token.unsqueeze(1), false).squeeze_dim(1);
    (token, lp, ent)
}

/// `x.sum(-1)` of `[A, V]` f32 rows, the same bits at any thread count. libtorch splits a
/// sum with a single output over many elements across its threads (so its rounding
/// follows the thread count); one row is therefore summed as two copies, which libtorch
/// reduces one output per thread.
fn row_sums(x: &Tensor, keepdim: bool) -> Tensor {
    if x.size()[0] == 1 {
        Tensor::cat(&[x, x], 0)
            .sum_dim_intlist(-1, keepdim, Kind::Float)
            .narrow(0, 0, 1)
    } else {
        x.sum_dim_intlist(-1, keepdim, Kind::Float)
    }
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
        let renorm = &sorted / row_sums(&sorted, true);
        let before = renorm.cumsum(-1, Kind::Float) - &renorm;
        sorted = sorted.masked_fill(&before.ge(cfg.top_p), 0.0);
    }
    order
        .gather(1, &pick(&sorted).unsqueeze(1), false)
        .squeeze_dim(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row, or several, sums to the same bits at 1 to 4 threads (a plain sum of one
    /// row over a vocabulary does not).
    #[test]
    fn row_sums_do_not_depend_on_the_thread_count() {
        let before = tch::get_num_threads();
        for rows in [1, 2, 3] {
            let x = Tensor::randn([rows, 49_152], (Kind::Float, tch::Device::Cpu));
            let sums: Vec<Vec<f32>> = (1..=4)
                .map(|threads| {
                    tch::set_num_threads(threads);
                    Vec::<f32>::try_from(row_sums(&x, false)).unwrap()
                })
                .collect();
            assert!(sums.iter().all(|s| s == &sums[0]), "{rows} rows: {sums:?}");
        }
        tch::set_num_threads(before);
    }
}
