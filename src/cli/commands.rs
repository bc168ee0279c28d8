//! The small `cove` subcommands: `fit` (the entropy-performance law on a metrics file)
//! and `synth-math` (regenerate the synthetic math set).

use crate::data::synth::{DEFAULT_SEED, DEFAULT_TEST, DEFAULT_TRAIN, generate_splits, write_jsonl};
use crate::law::{fit, fit_fraction, read_metrics};
use std::path::PathBuf;

/// Arguments of `cove fit`.
#[derive(Debug, Clone, clap::Args)]
pub struct FitArgs {
    /// The trainer's metrics file (one JSON object per step).
    pub metrics: PathBuf,
    /// Field holding the policy entropy (dots reach into nested objects).
    #[arg(long, default_value = "entropy")]
    pub entropy_key: String,
    /// Field holding the performance (accuracy or reward).
    #[arg(long, default_value = "accuracy")]
    pub perf_key: String,
    /// Also fit on only the first FRACTION of steps and report the error on the rest
    /// (the paper uses 0.15).
    #[arg(long, value_name = "FRACTION")]
    pub fit_fraction: Option<f64>,
    /// Also draw the points and the fitted curve into this PNG.
    #[arg(long, value_name = "PNG")]
    pub plot: Option<PathBuf>,
}

/// Runs `cove fit`: reads the points, fits the law (and the early fit when asked), draws
/// the plot when asked, and returns the text to print.
pub fn run_fit(args: &FitArgs) -> Result<String, Box<dyn std::error::Error>> {
    let points = read_metrics(&args.metrics, &args.entropy_key, &args.perf_key)?;
    let law = fit(&points)?;
    let mut out = format!(
        "R = -a*exp(H) + b fitted on {n} points of {path} (H = `{h}`, R = `{r}`)\n\
         a = {a:.6}\nb = {b:.6}\nRMSE = {rmse:.6}\npredicted ceiling (H = 0): -a + b = {c:.6}\n",
        n = law.n,
        path = args.metrics.display(),
        h = args.entropy_key,
        r = args.perf_key,
        a = law.a,
        b = law.b,
        rmse = law.rmse,
        c = law.ceiling(),
    );
    if let Some(fraction) = args.fit_fraction {
        let ex = fit_fraction(&points, fraction)?;
        out.push_str(&format!(
            "fit on the first {pct}% of steps ({n} points): a = {a:.6}, b = {b:.6}, ceiling = {c:.6}\n\
             prediction on the other {held} points: RMSE = {rmse:.6}, max |error| = {max:.6}\n\
             last step: predicted {pred:.6}, measured {act:.6}\n",
            pct = fraction * 100.0,
            n = ex.fit.n,
            a = ex.fit.a,
            b = ex.fit.b,
            c = ex.fit.ceiling(),
            held = ex.held_out,
            rmse = ex.rmse_held_out,
            max = ex.max_abs_err_held_out,
            pred = ex.final_predicted,
            act = ex.final_actual,
        ));
    }
    if let Some(png) = &args.plot {
        let series = crate::cli::plot::Series {
            label: args.metrics.display().to_string(),
            points: points.iter().map(|p| (p.entropy, p.perf)).collect(),
            ..crate::cli::plot::Series::default()
        };
        crate::cli::plot::law_chart(
            png,
            "entropy vs performance",
            &args.perf_key,
            &[series],
            &law,
        )?;
        out.push_str(&format!("plot: {}\n", png.display()));
    }
    Ok(out)
}

/// Arguments of `cove synth-math`.
#[derive(Debug, Clone, clap::Args)]
pub struct SynthArgs {
    /// Output folder (gets train.jsonl and test.jsonl).
    #[arg(long, default_value = "datasets/math")]
    pub out: std::path::PathBuf,
    /// Generator seed (the committed set uses the default).
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// Training problems.
    #[arg(long, default_value_t = DEFAULT_TRAIN)]
    pub train: usize,
    /// Test problems.
    #[arg(long, default_value_t = DEFAULT_TEST)]
    pub test: usize,
}

/// Runs `cove synth-math`: writes `train.jsonl` and `test.jsonl` into `args.out`.
pub fn run_synth(args: &SynthArgs) -> Result<String, Box<dyn std::error::Error>> {
    std::fs::create_dir_all(&args.out)?;
    let (train, test) = generate_splits(args.seed, args.train, args.test);
    write_jsonl(&args.out.join("train.jsonl"), &train)?;
    write_jsonl(&args.out.join("test.jsonl"), &test)?;
    Ok(format!(
        "wrote {} training and {} test problems (seed {}) to {}\n",
        train.len(),
        test.len(),
        args.seed,
        args.out.display()
    ))
}
