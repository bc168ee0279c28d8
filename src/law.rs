//! The entropy–performance law of Cui et al. (2025): `R = -a·exp(H) + b`.
//!
//! During RL on reasoning models, validation performance `R` is, to a good approximation,
//! an exponential function of the policy entropy `H`. Once `a` and `b` are known, the
//! performance ceiling is the value at zero entropy, `-a + b`, and the paper shows the two
//! coefficients can be fitted on the first ~15% of training and used to predict the rest.
//!
//! With `x = exp(H)` the law is linear in `(a, b)`, so the least-squares fit is the closed
//! form of a simple linear regression of `R` on `x` (slope `-a`, intercept `b`). This module
//! holds that fit ([`fit`]), the early-fit/extrapolation check ([`fit_fraction`]), and the
//! reader for the trainer's `metrics.jsonl` ([`read_metrics`]) used by `cove fit`.

use std::io::BufRead;
use std::path::{Path, PathBuf};

/// Why a fit or a metrics file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LawError {
    /// Fewer than two points, or all points share one entropy value: `a` is undetermined.
    #[error("cannot fit R = -a*exp(H) + b: {0}")]
    Degenerate(String),
    /// A point has a non-finite entropy or performance value.
    #[error("point {index} is not finite (H = {entropy}, R = {perf})")]
    NotFinite {
        /// Index of the point in the input order.
        index: usize,
        /// Its entropy.
        entropy: f64,
        /// Its performance.
        perf: f64,
    },
    /// `--fit-fraction` outside (0, 1) or leaving no held-out point.
    #[error(
        "fit fraction {fraction} leaves {fit} fit points and {held_out} held-out points of {total}; need at least 2 and 1"
    )]
    BadFraction {
        /// The requested fraction.
        fraction: f64,
        /// Points it would fit on.
        fit: usize,
        /// Points it would hold out.
        held_out: usize,
        /// All points.
        total: usize,
    },
    /// The metrics file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line of the metrics file is not a JSON object with the needed numeric fields.
    #[error("{path}:{line}: {message}")]
    BadLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
}

/// One observation: the policy entropy and the performance measured at a training step.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LawPoint {
    /// Training step (x axis of the curves; orders the points for `--fit-fraction`).
    pub step: f64,
    /// Policy entropy `H` (mean per-token entropy, nats).
    pub entropy: f64,
    /// Performance `R` (accuracy or mean reward).
    pub perf: f64,
}

/// Fitted coefficients of `R = -a·exp(H) + b`, with the fit's own error.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LawFit {
    /// Coefficient `a` (positive when performance rises as entropy falls).
    pub a: f64,
    /// Coefficient `b`.
    pub b: f64,
    /// Root-mean-square residual over the points fitted.
    pub rmse: f64,
    /// Number of points fitted.
    pub n: usize,
}

impl LawFit {
    /// Predicted performance at entropy `h`.
    pub fn predict(&self, h: f64) -> f64 {
        -self.a * h.exp() + self.b
    }

    /// Predicted ceiling: performance when entropy has fully collapsed (`H = 0`), `-a + b`.
    pub fn ceiling(&self) -> f64 {
        -self.a + self.b
    }

    /// Root-mean-square error of the law's prediction on `points`.
    pub fn rmse_on(&self, points: &[LawPoint]) -> f64 {
        if points.is_empty() {
            return 0.0;
        }
        let sq: f64 = points
            .iter()
            .map(|p| (self.predict(p.entropy) - p.perf).powi(2))
            .sum();
        (sq / points.len() as f64).sqrt()
    }
}

/// Least-squares fit of `R = -a·exp(H) + b` to `points` (closed form; needs at least two
/// distinct entropies).
pub fn fit(points: &[LawPoint]) -> Result<LawFit, LawError> {
    for (index, p) in points.iter().enumerate() {
        if !p.entropy.is_finite() || !p.perf.is_finite() {
            return Err(LawError::NotFinite {
                index,
                entropy: p.entropy,
                perf: p.perf,
            });
        }
    }
    let n = points.len();
    if n < 2 {
        return Err(LawError::Degenerate(format!(
            "{n} point(s), need at least 2"
        )));
    }
    let nf = n as f64;
    let mean_x = points.iter().map(|p| p.entropy.exp()).sum::<f64>() / nf;
    let mean_r = points.iter().map(|p| p.perf).sum::<f64>() / nf;
    let (mut sxx, mut sxr) = (0.0, 0.0);
    for p in points {
        let dx = p.entropy.exp() - mean_x;
        sxx += dx * dx;
        sxr += dx * (p.perf - mean_r);
    }
    // Relative threshold: exp(H) values that agree to ~1e-12 carry no slope information.
    if sxx <= 1e-24 * mean_x * mean_x * nf {
        return Err(LawError::Degenerate(
            "all points have the same entropy".to_string(),
        ));
    }
    let slope = sxr / sxx;
    let mut law = LawFit {
        a: -slope,
        b: mean_r - slope * mean_x,
        rmse: 0.0,
        n,
    };
    law.rmse = law.rmse_on(points);
    Ok(law)
}

/// The paper's early-prediction check: fit on the first `fraction` of the points (in step
/// order) and measure how well the law predicts the rest.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Extrapolation {
    /// The law fitted on the early points only.
    pub fit: LawFit,
    /// The fraction requested.
    pub fraction: f64,
    /// Number of held-out (later) points.
    pub held_out: usize,
    /// RMSE of the early law's predictions on the held-out points.
    pub rmse_held_out: f64,
    /// Largest absolute prediction error on the held-out points.
    pub max_abs_err_held_out: f64,
    /// Performance at the last step, as measured.
    pub final_actual: f64,
    /// Performance at the last step, as predicted from its entropy by the early law.
    pub final_predicted: f64,
}

/// Fits on the first `ceil(fraction · n)` points by step (at least 2) and reports the
/// prediction error on the remaining ones.
pub fn fit_fraction(points: &[LawPoint], fraction: f64) -> Result<Extrapolation, LawError> {
    let total = points.len();
    let n_fit = if fraction > 0.0 && fraction < 1.0 {
        ((fraction * total as f64).ceil() as usize).max(2)
    } else {
        0
    };
    if n_fit < 2 || n_fit >= total {
        return Err(LawError::BadFraction {
            fraction,
            fit: n_fit,
            held_out: total.saturating_sub(n_fit),
            total,
        });
    }
    let mut sorted = points.to_vec();
    sorted.sort_by(|x, y| x.step.total_cmp(&y.step));
    let (early, late) = sorted.split_at(n_fit);
    let law = fit(early)?;
    let max_abs_err_held_out = late
        .iter()
        .map(|p| (law.predict(p.entropy) - p.perf).abs())
        .fold(0.0, f64::max);
    let last = late[late.len() - 1];
    Ok(Extrapolation {
        fit: law,
        fraction,
        held_out: late.len(),
        rmse_held_out: law.rmse_on(late),
        max_abs_err_held_out,
        final_actual: last.perf,
        final_predicted: law.predict(last.entropy),
    })
}

/// Reads `(step, entropy, performance)` points from a metrics JSONL file (one JSON object
/// per line, as the trainer writes). `entropy_key` and `perf_key` name the fields, with
/// `.` separating nested keys; lines lacking either field (e.g. a header or an eval-only
/// line) are skipped, a line that is not JSON or has a non-numeric value is an error. The
/// step is the `step` field when present, else the line's position.
pub fn read_metrics(
    path: &Path,
    entropy_key: &str,
    perf_key: &str,
) -> Result<Vec<LawPoint>, LawError> {
    let io = |source| LawError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut points = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| LawError::BadLine {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let value: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| bad(format!("not JSON: {e}")))?;
        let number = |key: &str| -> Result<Option<f64>, LawError> {
            match lookup(&value, key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(v) => v
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| bad(format!("field `{key}` is not a number: {v}"))),
            }
        };
        let (Some(entropy), Some(perf)) = (number(entropy_key)?, number(perf_key)?) else {
            continue;
        };
        let step = number("step")?.unwrap_or(points.len() as f64);
        points.push(LawPoint {
            step,
            entropy,
            perf,
        });
    }
    Ok(points)
}

/// Watches the per-step entropy and raises the entropy-collapse warning once, when the
/// entropy first falls below `fraction` of its value at the first observed step.
#[derive(Debug, Clone)]
pub struct EntropyWatch {
    fraction: f64,
    start: Option<f64>,
    warned: bool,
}

impl EntropyWatch {
    /// A watch that warns below `fraction` (e.g. 0.3) of the starting entropy.
    pub fn new(fraction: f64) -> Self {
        Self {
            fraction,
            start: None,
            warned: false,
        }
    }

    /// Feeds one step's entropy; returns the warning text the first time the threshold is
    /// crossed, `None` otherwise (non-finite values are ignored).
    pub fn observe(&mut self, step: u64, entropy: f64) -> Option<String> {
        if !entropy.is_finite() {
            return None;
        }
        let start = *self.start.get_or_insert(entropy);
        if self.warned || start <= 0.0 || entropy >= self.fraction * start {
            return None;
        }
        self.warned = true;
        Some(format!(
            "entropy collapse: at step {step} the policy entropy is {entropy:.4}, below \
             {pct:.0}% of its start value {start:.4}; exploration is drying up and performance \
             will plateau near the law's ceiling (consider Clip-Cov or KL-Cov)",
            pct = self.fraction * 100.0
        ))
    }
}

/// Looks up a dotted key (`a.b.c`) in nested JSON objects.
fn lookup<'v>(value: &'v serde_json::Value, key: &str) -> Option<&'v serde_json::Value> {
    if let Some(v) = value.get(key) {
        return Some(v);
    }
    key.split('.').try_fold(value, |v, part| v.get(part))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic training curve: entropy decays from `h0` towards 0, performance follows
    /// the law exactly, plus a deterministic ±`noise` wobble.
    fn curve(a: f64, b: f64, h0: f64, n: usize, noise: f64) -> Vec<LawPoint> {
        (0..n)
            .map(|i| {
                let entropy = h0 * (-(i as f64) / (n as f64 / 4.0)).exp();
                let wobble = if i % 2 == 0 { noise } else { -noise };
                LawPoint {
                    step: i as f64,
                    entropy,
                    perf: -a * entropy.exp() + b + wobble,
                }
            })
            .collect()
    }

    #[test]
    fn recovers_known_coefficients_exactly() {
        let points = curve(0.35, 0.9, 1.2, 60, 0.0);
        let law = fit(&points).unwrap();
        assert!((law.a - 0.35).abs() < 1e-12, "a = {}", law.a);
        assert!((law.b - 0.9).abs() < 1e-12, "b = {}", law.b);
        assert!(law.rmse < 1e-12);
        assert!((law.ceiling() - 0.55).abs() < 1e-12);
        assert_eq!(law.n, 60);
    }

    #[test]
    fn noisy_curve_gives_close_coefficients_and_rmse_of_the_noise() {
        let points = curve(0.2, 0.7, 0.8, 200, 0.01);
        let law = fit(&points).unwrap();
        assert!((law.a - 0.2).abs() < 0.02, "a = {}", law.a);
        assert!((law.b - 0.7).abs() < 0.03, "b = {}", law.b);
        assert!((law.rmse - 0.01).abs() < 0.002, "rmse = {}", law.rmse);
    }

    #[test]
    fn early_fit_predicts_the_rest_of_an_exact_curve() {
        let points = curve(0.5, 1.1, 1.5, 100, 0.0);
        let ex = fit_fraction(&points, 0.15).unwrap();
        assert_eq!(ex.fit.n, 15);
        assert_eq!(ex.held_out, 85);
        assert!(ex.rmse_held_out < 1e-9, "{}", ex.rmse_held_out);
        assert!((ex.final_predicted - ex.final_actual).abs() < 1e-9);
        assert!((ex.fit.a - 0.5).abs() < 1e-9 && (ex.fit.b - 1.1).abs() < 1e-9);
    }

    #[test]
    fn early_fit_orders_points_by_step() {
        let mut points = curve(0.5, 1.1, 1.5, 20, 0.0);
        points.reverse();
        // Corrupt the last steps: a fit on the first 25% by step must not see them.
        for p in points.iter_mut().filter(|p| p.step >= 18.0) {
            p.perf += 5.0;
        }
        let ex = fit_fraction(&points, 0.25).unwrap();
        assert!((ex.fit.a - 0.5).abs() < 1e-9);
        assert!(ex.max_abs_err_held_out > 4.9);
    }

    #[test]
    fn degenerate_inputs_are_errors() {
        let one = [LawPoint {
            step: 0.0,
            entropy: 1.0,
            perf: 0.5,
        }];
        assert!(matches!(fit(&one), Err(LawError::Degenerate(_))));
        let flat: Vec<LawPoint> = (0..5)
            .map(|i| LawPoint {
                step: i as f64,
                entropy: 0.7,
                perf: i as f64,
            })
            .collect();
        assert!(matches!(fit(&flat), Err(LawError::Degenerate(_))));
        let mut nan = curve(0.1, 0.5, 1.0, 5, 0.0);
        nan[3].perf = f64::NAN;
        assert!(matches!(
            fit(&nan),
            Err(LawError::NotFinite { index: 3, .. })
        ));
        let pts = curve(0.1, 0.5, 1.0, 10, 0.0);
        assert!(matches!(
            fit_fraction(&pts, 1.0),
            Err(LawError::BadFraction { .. })
        ));
        assert!(matches!(
            fit_fraction(&pts[..2], 0.5),
            Err(LawError::BadFraction { .. })
        ));
    }

    #[test]
    fn entropy_watch_warns_once_below_the_fraction() {
        let mut watch = EntropyWatch::new(0.5);
        assert_eq!(watch.observe(0, 2.0), None);
        assert_eq!(watch.observe(1, 1.2), None);
        assert_eq!(watch.observe(2, f64::NAN), None);
        let warning = watch.observe(3, 0.9).expect("0.9 < 0.5 * 2.0");
        assert!(
            warning.contains("step 3") && warning.contains("50%"),
            "{warning}"
        );
        assert_eq!(watch.observe(4, 0.5), None, "warns only once");
    }

    #[test]
    fn reads_metrics_with_nested_keys_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        std::fs::write(
            &path,
            "{\"step\":1,\"entropy\":1.0,\"val\":{\"acc\":0.2}}\n\
             {\"step\":2,\"entropy\":0.5}\n\
             \n\
             {\"step\":3,\"entropy\":0.25,\"val\":{\"acc\":0.4}}\n",
        )
        .unwrap();
        let points = read_metrics(&path, "entropy", "val.acc").unwrap();
        assert_eq!(points.len(), 2);
        assert_eq!(points[1].step, 3.0);
        assert_eq!(points[1].perf, 0.4);

        std::fs::write(&path, "{\"entropy\":1.0,\"accuracy\":0.1}\n{oops\n").unwrap();
        let err = read_metrics(&path, "entropy", "accuracy").unwrap_err();
        assert!(err.to_string().contains("metrics.jsonl:2"), "{err}");
        std::fs::write(&path, "{\"entropy\":\"high\",\"accuracy\":0.1}\n").unwrap();
        let err = read_metrics(&path, "entropy", "accuracy").unwrap_err();
        assert!(err.to_string().contains(":1: field `entropy`"), "{err}");
    }
}
