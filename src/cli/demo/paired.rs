//! The paired mechanism test: from identical weights, on the same fixed rollout batches,
//! one step of each arm (all of that step's updates); per batch, each arm's change of
//! the probe entropy. A Cov arm is compared with the GRPO arm of the same PPO clip, batch
//! by batch, so the sampling noise that swamps single runs cancels: the mean difference
//! with a 95% interval (Student's t over the batches).

use super::config::{DemoConfig, PairedResult};
use super::{DemoError, reward, start_policy};
use crate::dist::Launch;
use crate::eval::Probe;
use crate::loss::{ControlConfig, LossConfig};
use crate::rollout::{LocalEngine, RolloutEngine, RolloutRequest};
use crate::seed::mix_seed;
use crate::trainer::{Example, Trainer};
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

/// Everything the paired test starts from.
pub(super) struct PairedSetup<'a> {
    pub cfg: &'a DemoConfig,
    pub launch: &'a Launch,
    pub data: &'a [Example<String>],
    pub warm_weights: Option<&'a PathBuf>,
    pub probe: &'a Probe,
    pub out: &'a Path,
}

/// Each arm's probe-entropy change per batch (`changes[arm][batch]`), and the start
/// entropy; `log` receives progress lines.
pub(super) fn run(
    s: &PairedSetup,
    log: &dyn Fn(String),
) -> Result<(Vec<PairedResult>, Vec<Vec<f64>>), DemoError> {
    let cfg = s.cfg;
    let arms: Vec<LossConfig> = cfg
        .methods
        .iter()
        .map(|m| m.loss_config(&cfg.grpo.loss))
        .collect::<Result<_, _>>()?;
    let base = start_policy(cfg, s.launch, s.warm_weights)?;
    let h0 = s.probe.entropy(&base)?;
    let prompts_needed = cfg.grpo.prompts_per_step;
    let mut changes = vec![Vec::new(); arms.len()];
    for batch in 0..cfg.paired_batches {
        // A fixed batch: prompts drawn by (seed, batch), sampled from the start policy.
        let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(cfg.seed, 0xBA7C ^ batch as u64));
        let tasks: Vec<usize> = sample(&mut rng, s.data.len(), prompts_needed.min(s.data.len()))
            .into_iter()
            .collect();
        let prompts = tasks
            .iter()
            .map(|&i| base.prompt_ids(&s.data[i].prompt.messages(), cfg.grpo.chat_template))
            .collect::<Result<Vec<_>, _>>()?;
        let keys: Vec<u64> = (0..tasks.len() as u64).collect();
        let sampling = cfg
            .grpo
            .rollout
            .sampling(cfg.grpo.group_size, mix_seed(cfg.seed, batch as u64));
        let trajectories = LocalEngine.generate(
            &base,
            &RolloutRequest {
                prompts: &prompts,
                tasks: &tasks,
                keys: &keys,
                sampling: &sampling,
                policy_version: 0,
            },
        )?;
        let mut line = format!("paired batch {}/{}:", batch + 1, cfg.paired_batches);
        for (k, (method, loss)) in cfg.methods.iter().zip(&arms).enumerate() {
            let mut tcfg = cfg.grpo.clone();
            tcfg.loss = loss.clone();
            tcfg.steps = 1;
            tcfg.dynamic_sampling.enabled = false;
            tcfg.out_dir = s.out.join("paired").join(&method.name);
            let policy = start_policy(cfg, s.launch, s.warm_weights)?;
            let mut trainer = Trainer::new(tcfg, policy, reward(), s.data.to_vec())?;
            trainer.learn(&trajectories)?;
            let change = s.probe.entropy(trainer.policy())? - h0;
            line.push_str(&format!(" {} {change:+.5}", method.name));
            changes[k].push(change);
        }
        log(line);
    }
    let results = cfg
        .methods
        .iter()
        .zip(&arms)
        .enumerate()
        .filter(|(_, (_, loss))| loss.control != ControlConfig::None)
        .filter_map(|(k, (method, loss))| {
            let b = baseline(&arms, loss)?;
            let diffs: Vec<f64> = changes[k]
                .iter()
                .zip(&changes[b])
                .map(|(a, g)| a - g)
                .collect();
            let (mean, half) = mean_ci95(&diffs);
            Some(PairedResult {
                name: method.name.clone(),
                baseline: cfg.methods[b].name.clone(),
                batches: diffs.len(),
                mean_entropy_change: mean,
                ci95_low: mean - half,
                ci95_high: mean + half,
                arm_mean_change: mean_ci95(&changes[k]).0,
                baseline_mean_change: mean_ci95(&changes[b]).0,
            })
        })
        .collect();
    Ok((results, changes))
}

/// The GRPO arm (no control) whose PPO clip is `loss`'s: the comparison that separates
/// the covariance control from the clip.
fn baseline(arms: &[LossConfig], loss: &LossConfig) -> Option<usize> {
    arms.iter()
        .position(|a| a.control == ControlConfig::None && a.clip == loss.clip)
}

/// Mean and sample standard deviation of `values` (sd 0 for one value).
pub(super) fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

/// Mean and the half-width of its 95% interval (Student's t, `n - 1` degrees of
/// freedom); an interval of 0 width below two values.
pub fn mean_ci95(values: &[f64]) -> (f64, f64) {
    let n = values.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let (mean, sd) = mean_sd(values);
    if n < 2 {
        return (mean, 0.0);
    }
    (mean, t975(n - 1) * sd / (n as f64).sqrt())
}

/// The 97.5% quantile of Student's t with `df` degrees of freedom.
fn t975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => TABLE[df - 1],
        31..=60 => 2.000,
        _ => 1.960,
    }
}

#[cfg(test)]
mod tests {
    use super::mean_ci95;

    #[test]
    fn the_interval_is_students() {
        // 16 values: mean 1, sample sd 2 -> half-width 2.131 * 2 / 4.
        let v: Vec<f64> = (0..16)
            .map(|i| if i % 2 == 0 { -1.0 } else { 3.0 })
            .collect();
        let (mean, half) = mean_ci95(&v);
        let sd = (16.0 * 4.0 / 15.0f64).sqrt();
        assert!((mean - 1.0).abs() < 1e-12);
        assert!((half - 2.131 * sd / 4.0).abs() < 1e-9, "{half}");
    }
}
