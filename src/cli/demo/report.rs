//! The demo's report: plots, `summary.md` and `outcome.json`.

use super::DemoError;
use super::config::{DemoConfig, DemoOutcome, MethodResult};
use super::paired::mean_sd;
use crate::cli::plot::{self, Series};
use crate::law;
use crate::loss::{ControlConfig, LossConfig};
use crate::run_dir::RunDir;

/// Writes the plots and `summary.md`.
pub(super) fn write_report(
    cfg: &DemoConfig,
    run: &RunDir,
    o: &DemoOutcome,
) -> Result<(), DemoError> {
    // One curve per arm: its run's, or over several seeds their mean with the min-max band.
    let series = |f: &dyn Fn(&MethodResult) -> Vec<(f64, f64)>| -> Vec<Series> {
        cfg.methods
            .iter()
            .map(|arm| {
                let curves: Vec<Vec<(f64, f64)>> = o
                    .methods
                    .iter()
                    .filter(|r| r.name == arm.name)
                    .map(f)
                    .collect();
                let mut series = Series {
                    label: arm.name.clone(),
                    ..Series::default()
                };
                let len = curves.iter().map(Vec::len).min().unwrap_or(0);
                for i in 0..len {
                    let ys: Vec<f64> = curves.iter().map(|c| c[i].1).collect();
                    let x = curves[0][i].0;
                    series
                        .points
                        .push((x, ys.iter().sum::<f64>() / ys.len() as f64));
                    if curves.len() > 1 {
                        let lo = ys.iter().copied().fold(f64::INFINITY, f64::min);
                        let hi = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                        series.spread.push((x, lo, hi));
                    }
                }
                series
            })
            .collect()
    };
    let plots = run.plots();
    // A run of zero steps (e.g. only the paired test) has nothing to plot over steps.
    let line_chart = |path: &std::path::Path, title: &str, y: &str, series: &[Series]| {
        if series.iter().all(|s| s.points.len() < 2) {
            return Ok(());
        }
        plot::line_chart(path, title, "step", y, series)
    };
    line_chart(
        &plots.join("entropy_vs_step.png"),
        "Policy entropy during GRPO",
        "entropy (nats/token)",
        &series(&|m| m.entropy.clone()),
    )?;
    line_chart(
        &plots.join("probe_entropy_vs_step.png"),
        "Policy entropy on the fixed probe (same prompts and responses each step)",
        "entropy (nats/token)",
        &series(&|m| m.probe_entropy.clone()),
    )?;
    line_chart(
        &plots.join("accuracy_vs_step.png"),
        "Task accuracy during GRPO (pass@1, T = 1)",
        "task accuracy",
        &series(&|m| m.accuracy.clone()),
    )?;
    line_chart(
        &plots.join("cov_vs_step.png"),
        "Mean token covariance of log-prob and advantage",
        "mean Cov(log pi, A)",
        &series(&|m| m.cov_mean.clone()),
    )?;
    if let Some(law) = &o.law {
        plot::law_chart(
            &plots.join("accuracy_vs_entropy.png"),
            "Accuracy vs entropy, law fitted on plain GRPO",
            "task accuracy",
            &cfg.methods
                .iter()
                .map(|arm| Series {
                    label: arm.name.clone(),
                    points: o
                        .methods
                        .iter()
                        .filter(|r| r.name == arm.name)
                        .flat_map(|r| r.points.iter().map(|p| (p.entropy, p.perf)))
                        .collect(),
                    ..Series::default()
                })
                .collect::<Vec<_>>(),
            law,
        )?;
    }
    std::fs::write(run.root.join("summary.md"), summary(cfg, o))?;
    std::fs::write(
        run.root.join("summary.json"),
        serde_json::to_string_pretty(&summary_json(cfg, o))?,
    )?;
    std::fs::write(
        run.root.join("outcome.json"),
        serde_json::to_string_pretty(o)?,
    )?;
    Ok(())
}

/// An arm's loss in words: its control and its PPO clip.
fn arm_text(loss: &LossConfig) -> String {
    let clip = format!(
        "PPO clip [1 - {}, 1 + {}]",
        loss.clip.eps_low, loss.clip.eps_high
    );
    match &loss.control {
        ControlConfig::None => format!("no control, {clip}"),
        ControlConfig::ClipCov { ratio, lb, ub } => {
            format!("Clip-Cov r = {ratio}, lb = {lb}, ub = {ub}, {clip}")
        }
        ControlConfig::KlCov { ratio, beta } => {
            format!("KL-Cov k = {ratio}, beta = {beta}, no PPO clip")
        }
        other => format!("{other:?}, {clip}"),
    }
}

/// Mean of the second coordinate of `points` (0 when empty).
fn mean_of(points: &[(f64, f64)]) -> f64 {
    points.iter().map(|p| p.1).sum::<f64>() / points.len().max(1) as f64
}

/// Mean of the second coordinate over the last tenth of `points` (at least one point):
/// the end of a noisy curve.
fn tail_mean(points: &[(f64, f64)]) -> Option<f64> {
    let k = points.len().div_ceil(10);
    (k > 0).then(|| points[points.len() - k..].iter().map(|p| p.1).sum::<f64>() / k as f64)
}

/// `summary.json`: per arm its name, its loss settings and per seed the probe entropy
/// and accuracy at the start and the end; and the paired test per Cov arm.
pub fn summary_json(cfg: &DemoConfig, o: &DemoOutcome) -> serde_json::Value {
    let arms: Vec<serde_json::Value> = cfg
        .methods
        .iter()
        .map(|m| {
            let seeds: Vec<serde_json::Value> = o
                .methods
                .iter()
                .filter(|r| r.name == m.name)
                .map(|r| {
                    serde_json::json!({
                        "seed": r.seed,
                        "probe_entropy_start": r.probe_entropy.first().map(|p| p.1),
                        "probe_entropy_end": r.probe_entropy.last().map(|p| p.1),
                        "accuracy_start": r.accuracy.first().map(|p| p.1),
                        "accuracy_end": r.accuracy.last().map(|p| p.1),
                    })
                })
                .collect();
            serde_json::json!({
                "name": m.name,
                "loss": m.loss_config(&cfg.grpo.loss).ok(),
                "seeds": seeds,
            })
        })
        .collect();
    serde_json::json!({
        "model": cfg.model.path,
        "steps": cfg.grpo.steps,
        "arms": arms,
        "paired": o.paired,
    })
}

/// Per arm over its seeds: the probe entropy and accuracy at the end (mean +- sd), and
/// the smallest ratio, seed by seed, of its end probe entropy to the first arm's (GRPO's).
fn seeds_table(cfg: &DemoConfig, o: &DemoOutcome) -> String {
    let end = |r: &MethodResult, f: fn(&MethodResult) -> &Vec<(f64, f64)>| {
        f(r).last().map_or(f64::NAN, |p| p.1)
    };
    let base = cfg
        .methods
        .first()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = cfg
        .methods
        .iter()
        .map(|m| {
            let runs: Vec<&MethodResult> = o.methods.iter().filter(|r| r.name == m.name).collect();
            let h: Vec<f64> = runs.iter().map(|r| end(r, |r| &r.probe_entropy)).collect();
            let acc: Vec<f64> = runs.iter().map(|r| end(r, |r| &r.accuracy)).collect();
            let ratio = runs
                .iter()
                .filter_map(|r| {
                    let b = o
                        .methods
                        .iter()
                        .find(|x| x.name == base && x.seed == r.seed)?;
                    Some(end(r, |r| &r.probe_entropy) / end(b, |r| &r.probe_entropy))
                })
                .fold(f64::INFINITY, f64::min);
            let ((hm, hs), (am, asd)) = (mean_sd(&h), mean_sd(&acc));
            vec![
                m.name.clone(),
                runs.len().to_string(),
                format!("{hm:.4} +- {hs:.4}"),
                format!("{:.1}% +- {:.1}", am * 100.0, asd * 100.0),
                format!("{ratio:.2}"),
            ]
        })
        .collect();
    plot::markdown_table(
        &[
            "arm",
            "seeds",
            "probe H end (mean +- sd)",
            "accuracy end (mean +- sd)",
            "min over seeds of probe H end / grpo's",
        ],
        &rows,
    )
}

/// The paper's entropy dynamics on one run: the Pearson correlation, over steps, of the
/// batch's mean token covariance (under the policy that sampled it) with the change of
/// the probe's entropy across that step. The paper predicts it negative.
pub fn dynamics_correlation(m: &MethodResult) -> Option<f64> {
    let pairs: Vec<(f64, f64)> = m
        .probe_entropy
        .windows(2)
        .filter_map(|w| {
            let cov = m.cov_mean.iter().find(|c| c.0 == w[1].0)?.1;
            Some((cov, w[1].1 - w[0].1))
        })
        .collect();
    pearson(&pairs)
}

/// Pearson correlation of `(x, y)` pairs (none for fewer than 3 or a constant side).
fn pearson(pairs: &[(f64, f64)]) -> Option<f64> {
    let n = pairs.len() as f64;
    if pairs.len() < 3 {
        return None;
    }
    let (mx, my) = (
        pairs.iter().map(|p| p.0).sum::<f64>() / n,
        pairs.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxy: f64 = pairs.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pairs.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let syy: f64 = pairs.iter().map(|p| (p.1 - my).powi(2)).sum();
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// The markdown summary.
pub fn summary(cfg: &DemoConfig, o: &DemoOutcome) -> String {
    let f = |v: Option<f64>, pct: bool| match v {
        Some(x) if pct => format!("{:.1}%", x * 100.0),
        Some(x) => format!("{x:.3}"),
        None => "n/a".to_string(),
    };
    let rows: Vec<Vec<String>> = o
        .methods
        .iter()
        .map(|m| {
            let mut row = vec![
                if cfg.seeds > 1 {
                    format!("{} (seed {})", m.name, m.seed)
                } else {
                    m.name.clone()
                },
                f(m.entropy.first().map(|e| e.1), false),
                f(m.entropy.last().map(|e| e.1), false),
                f(tail_mean(&m.entropy), false),
                f(m.probe_entropy.first().map(|e| e.1), false),
                f(m.probe_entropy.last().map(|e| e.1), false),
                f(dynamics_correlation(m), false),
                f(m.accuracy.first().map(|a| a.1), true),
                f(m.accuracy.last().map(|a| a.1), true),
                f(tail_mean(&m.accuracy), true),
                format!("{:.2e}", mean_of(&m.cov_mean)),
                format!("{:.2e}", mean_of(&m.selected_frac)),
            ];
            let fit = law::fit(&m.points).ok();
            row.push(f(fit.map(|l| l.a), false));
            row.push(f(fit.map(|l| l.b), false));
            row.push(format!("{:.0}", m.seconds));
            row
        })
        .collect();
    let mut s = String::from("# Cove demo: entropy collapse and the Cov methods\n\n");
    let start = match &cfg.sft {
        Some(_) => format!(
            "{} supervised warm-start steps on the task, to {:.1}% accuracy",
            o.sft_steps,
            o.sft_accuracy * 100.0
        ),
        None => format!(
            "no warm start: the pretrained weights, at {:.1}% accuracy",
            o.sft_accuracy * 100.0
        ),
    };
    let eval_set = if cfg.held_out {
        "held-out problems of the test split (never trained on)"
    } else {
        "problems of the task (pass@1 on the prompts GRPO trains on, not a held-out score)"
    };
    s.push_str(&format!(
        "Policy `{}`; {}. GRPO on {} problems of levels {:?} of the synthetic math set for {} \
         steps x {} prompts x {} samples per method ({} responses per optimizer mini-batch, \
         lr {:e}), same seed ({}) and budget. Accuracy: {} {}, one sample each at temperature \
         {}, every {} steps. \"Last 10%\" columns average the last tenth of the steps or \
         evaluations; \"mean cov\" and \"selected frac\" are means over the steps of the \
         batch's mean token covariance and of the fraction of tokens the control selected. \
         \"probe H\" is the entropy on a fixed probe (held-out prompts with responses \
         sampled once from the starting policy, the same at every step); \"corr(cov, dH)\" \
         correlates each step's batch covariance with the probe entropy's change across that \
         step (the paper: dH follows -Cov, so it should be negative). \
         Total wall time {:.0} s.\n\n",
        cfg.model.path,
        start,
        o.task_problems,
        cfg.levels,
        cfg.grpo.steps,
        cfg.grpo.prompts_per_step,
        cfg.grpo.group_size,
        cfg.grpo.mini_batch_size,
        cfg.grpo.optim.lr,
        cfg.seed,
        o.eval_problems,
        eval_set,
        cfg.grpo.rollout.temperature,
        cfg.eval_every,
        o.seconds
    ));
    s.push_str(&plot::markdown_table(
        &[
            "method",
            "entropy start",
            "entropy end",
            "entropy last 10%",
            "probe H start",
            "probe H end",
            "corr(cov, dH)",
            "accuracy start",
            "accuracy end",
            "accuracy last 10%",
            "mean cov",
            "selected frac",
            "fit a",
            "fit b",
            "seconds",
        ],
        &rows,
    ));
    s.push_str("\nArms: ");
    s.push_str(
        &cfg.methods
            .iter()
            .map(|m| match m.loss_config(&cfg.grpo.loss) {
                Ok(loss) => format!("`{}`: {}", m.name, arm_text(&loss)),
                Err(e) => format!("`{}`: {e}", m.name),
            })
            .collect::<Vec<_>>()
            .join("; "),
    );
    let tokens = mean_of(
        &o.methods
            .iter()
            .map(|m| (0.0, m.tokens_per_mini_batch))
            .collect::<Vec<_>>(),
    );
    s.push_str(&format!(
        ". Selection is per optimizer mini-batch, which here held about {tokens:.0} valid \
         response tokens, so the paper's ratios (Clip-Cov 2e-4, KL-Cov 2e-3 for 7B) would \
         select max(int(r*N), 1) = {} and {} tokens; the values above are the demo's. \
         Everything else is the paper's recipe (no KL to the reference, no entropy bonus, \
         beta 1, lb 1, ub 5).\n\n",
        ((2e-4 * tokens) as usize).max(1),
        ((2e-3 * tokens) as usize).max(1),
    ));
    match (&o.law, &o.extrapolation) {
        (Some(l), ex) => {
            s.push_str(&format!(
                "## Entropy-performance law (plain GRPO)\n\nR = -a*exp(H) + b fitted on {} points: \
                 a = {:.4}, b = {:.4}, RMSE = {:.4}, predicted ceiling -a + b = {:.1}%.\n",
                l.n,
                l.a,
                l.b,
                l.rmse,
                l.ceiling() * 100.0
            ));
            if let Some(ex) = ex {
                s.push_str(&format!(
                    "Fitted on the first {:.0}% of steps ({} points): a = {:.4}, b = {:.4}; on the \
                     other {} points the prediction RMSE is {:.4} (max |error| {:.4}); last step \
                     predicted {:.1}%, measured {:.1}% (the measurement's own sampling error, \
                     one sample on each of {} problems: +-{:.1} points).\n",
                    ex.fraction * 100.0,
                    ex.fit.n,
                    ex.fit.a,
                    ex.fit.b,
                    ex.held_out,
                    ex.rmse_held_out,
                    ex.max_abs_err_held_out,
                    ex.final_predicted * 100.0,
                    ex.final_actual * 100.0,
                    o.eval_problems,
                    100.0
                        * (ex.final_actual * (1.0 - ex.final_actual)
                            / o.eval_problems.max(1) as f64)
                            .sqrt(),
                ));
            }
        }
        (None, _) => s.push_str("The law could not be fitted (too few distinct points).\n"),
    }
    if cfg.seeds > 1 {
        s.push_str(&format!(
            "\n## Over {} seeds\n\nThe rows above are the runs, seed by seed; per arm:\n\n",
            cfg.seeds
        ));
        s.push_str(&seeds_table(cfg, o));
    }
    if !o.paired.is_empty() {
        s.push_str(
            "\n## Paired mechanism test\n\nFrom the starting weights, one step of every arm on \
             the same fixed rollout batch, for each batch; the Cov arm's change of the probe \
             entropy minus its baseline's (the GRPO arm with the same PPO clip) on the same \
             batch, mean and 95% interval (Student's t) over the batches.\n\n",
        );
        let rows: Vec<Vec<String>> = o
            .paired
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    p.baseline.clone(),
                    p.batches.to_string(),
                    format!("{:+.5}", p.arm_mean_change),
                    format!("{:+.5}", p.baseline_mean_change),
                    format!("{:+.5}", p.mean_entropy_change),
                    format!("[{:+.5}, {:+.5}]", p.ci95_low, p.ci95_high),
                ]
            })
            .collect();
        s.push_str(&plot::markdown_table(
            &[
                "arm",
                "baseline",
                "batches",
                "arm dH",
                "baseline dH",
                "difference",
                "95% interval",
            ],
            &rows,
        ));
    }
    s.push_str("\n## Warnings\n\n");
    for m in &o.methods {
        s.push_str(&format!(
            "- {}: {}\n",
            m.name,
            m.warning
                .as_deref()
                .unwrap_or("no entropy-collapse warning")
        ));
    }
    s.push_str(
        "\n## Plots\n\n![entropy](plots/entropy_vs_step.png)\n![accuracy](plots/accuracy_vs_step.png)\n\
         ![covariance](plots/cov_vs_step.png)\n![probe entropy](plots/probe_entropy_vs_step.png)\n![law](plots/accuracy_vs_entropy.png)\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::pearson;

    #[test]
    fn pearson_reads_the_sign_and_refuses_too_little() {
        let down: Vec<(f64, f64)> = (0..5).map(|i| (i as f64, 3.0 - 2.0 * i as f64)).collect();
        assert!((pearson(&down).unwrap() + 1.0).abs() < 1e-12);
        assert_eq!(pearson(&down[..2]), None);
        assert_eq!(pearson(&[(1.0, 2.0), (1.0, 3.0), (1.0, 4.0)]), None);
    }
}
