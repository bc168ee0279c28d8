//! Bindings of the math-answer verifier (`cove_verifiers::math`).

use cove_verifiers::math::extract::BoxedMode;
use cove_verifiers::math::value::MAX_DECIMAL_PLACES;
use cove_verifiers::math::{MathOptions, Verdict, verify, verify_batch};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyString};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

/// The largest `threads` a batch accepts (a typo such as `threads=10**6` would otherwise
/// try to start a million threads).
pub const MAX_THREADS: usize = 1024;

/// The option names, in the order of [`MathOptions`]' fields.
const OPTION_NAMES: &str =
    "boxed, last_number_fallback, rel_tol, percent_as_fraction, eval_points, decimal_places";

/// Most evaluation points `eval_points` may ask for (the verifier has 11).
const MAX_EVAL_POINTS: usize = 11;

/// Thread pools of batch calls with an explicit `threads`, kept for the process.
static POOLS: LazyLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The pool of `threads` threads (`None` for 0: rayon's global pool, all cores unless
/// `RAYON_NUM_THREADS` says otherwise). Call without the GIL: it may start threads.
pub fn pool(threads: usize) -> Result<Option<Arc<rayon::ThreadPool>>, String> {
    if threads == 0 {
        return Ok(None);
    }
    let mut pools = POOLS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(p) = pools.get(&threads) {
        return Ok(Some(p.clone()));
    }
    let p = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("cove-py-math-{i}"))
        .build()
        .map_err(|e| format!("cannot start a pool of {threads} threads: {e}"))?;
    let p = Arc::new(p);
    pools.insert(threads, p.clone());
    Ok(Some(p))
}

/// Checks `threads` (0 to [`MAX_THREADS`]).
pub fn check_threads(threads: usize) -> PyResult<()> {
    if threads > MAX_THREADS {
        return Err(PyValueError::new_err(format!(
            "threads must be between 0 (all cores) and {MAX_THREADS}, got {threads}"
        )));
    }
    Ok(())
}

fn expect_bool(name: &str, v: &Bound<'_, PyAny>) -> PyResult<bool> {
    if v.is_instance_of::<PyBool>() {
        v.extract()
    } else {
        Err(PyTypeError::new_err(format!(
            "math option {name} must be a bool, got {}",
            type_name(v)
        )))
    }
}

/// The Python type name of `v`, for messages.
pub fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".into())
}

/// Builds [`MathOptions`] from keyword arguments: an unknown name is a `TypeError` naming
/// it, a value of the wrong type a `TypeError`, a value out of range a `ValueError`.
pub fn parse_options(func: &str, options: Option<&Bound<'_, PyDict>>) -> PyResult<MathOptions> {
    let mut opts = MathOptions::default();
    let Some(options) = options else {
        return Ok(opts);
    };
    for (key, value) in options.iter() {
        let key: String = key
            .cast::<PyString>()
            .map_err(|_| PyTypeError::new_err(format!("{func}(): option names must be str")))?
            .to_string();
        match key.as_str() {
            "boxed" => {
                let s = value.cast::<PyString>().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "math option boxed must be a str ('last', 'first' or 'all'), got {}",
                        type_name(&value)
                    ))
                })?;
                let s = s.to_cow()?;
                opts.boxed = serde_json::from_value::<BoxedMode>(serde_json::Value::from(&*s))
                    .map_err(|e| PyValueError::new_err(format!("math option boxed: {e}")))?;
            }
            "last_number_fallback" => opts.last_number_fallback = expect_bool(&key, &value)?,
            "percent_as_fraction" => opts.percent_as_fraction = expect_bool(&key, &value)?,
            "rel_tol" => {
                if value.is_instance_of::<PyBool>()
                    || !(value.is_instance_of::<PyFloat>() || value.is_instance_of::<PyInt>())
                {
                    return Err(PyTypeError::new_err(format!(
                        "math option rel_tol must be a float, got {}",
                        type_name(&value)
                    )));
                }
                let tol: f64 = value.extract()?;
                if !tol.is_finite() || tol < 0.0 {
                    return Err(PyValueError::new_err(format!(
                        "math option rel_tol must be a finite number >= 0, got {tol}"
                    )));
                }
                opts.rel_tol = tol;
            }
            "eval_points" => {
                if value.is_instance_of::<PyBool>() || !value.is_instance_of::<PyInt>() {
                    return Err(PyTypeError::new_err(format!(
                        "math option eval_points must be an int, got {}",
                        type_name(&value)
                    )));
                }
                let n: i64 = value.extract().unwrap_or(i64::MAX);
                if !(1..=MAX_EVAL_POINTS as i64).contains(&n) {
                    return Err(PyValueError::new_err(format!(
                        "math option eval_points must be between 1 and {MAX_EVAL_POINTS}, got {value}"
                    )));
                }
                opts.eval_points = n as usize;
            }
            "decimal_places" => {
                if value.is_none() {
                    opts.decimal_places = None;
                    continue;
                }
                if value.is_instance_of::<PyBool>() || !value.is_instance_of::<PyInt>() {
                    return Err(PyTypeError::new_err(format!(
                        "math option decimal_places must be an int or None, got {}",
                        type_name(&value)
                    )));
                }
                let n: i64 = value.extract().unwrap_or(i64::MAX);
                if !(0..=i64::from(MAX_DECIMAL_PLACES)).contains(&n) {
                    return Err(PyValueError::new_err(format!(
                        "math option decimal_places must be between 0 and {MAX_DECIMAL_PLACES}, got {value}"
                    )));
                }
                opts.decimal_places = Some(n as u32);
            }
            other => {
                return Err(PyTypeError::new_err(format!(
                    "{func}() got an unexpected keyword argument '{other}' (math options: {OPTION_NAMES})"
                )));
            }
        }
    }
    Ok(opts)
}

/// A verdict as the dict the Python API returns.
fn verdict_dict<'py>(py: Python<'py>, v: Verdict) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("correct", v.correct)?;
    d.set_item("extracted", v.extracted)?;
    d.set_item("gold_normalized", v.gold_normalized)?;
    d.set_item("reason", v.reason)?;
    Ok(d)
}

/// `math_verify(gold, response, options=None)`: verifies one response; returns
/// `{"correct", "extracted", "gold_normalized", "reason"}`.
#[pyfunction]
#[pyo3(signature = (gold, response, options=None))]
pub fn math_verify<'py>(
    py: Python<'py>,
    gold: &str,
    response: &str,
    options: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    let opts = parse_options("verify", options)?;
    verdict_dict(py, verify(gold, response, &opts))
}

/// `math_verify_batch(pairs, threads=0, options=None)`: verifies `(gold, response)`
/// pairs in parallel with the GIL released, on `threads` threads (0: all cores);
/// results are in input order.
#[pyfunction]
#[pyo3(signature = (pairs, threads=0, options=None))]
pub fn math_verify_batch<'py>(
    py: Python<'py>,
    pairs: Vec<(String, String)>,
    threads: usize,
    options: Option<&Bound<'py, PyDict>>,
) -> PyResult<Vec<Bound<'py, PyDict>>> {
    let opts = parse_options("verify_batch", options)?;
    check_threads(threads)?;
    let verdicts = py
        .detach(|| {
            let run = || verify_batch(&pairs, &opts);
            pool(threads).map(|p| match p {
                Some(p) => p.install(run),
                None => run(),
            })
        })
        .map_err(super::VerifierError::new_err)?;
    verdicts.into_iter().map(|v| verdict_dict(py, v)).collect()
}

/// `math_default_options()`: the default math options as a dict.
#[pyfunction]
pub fn math_default_options(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let o = MathOptions::default();
    let d = PyDict::new(py);
    let boxed = match o.boxed {
        BoxedMode::Last => "last",
        BoxedMode::First => "first",
        BoxedMode::All => "all",
    };
    d.set_item("boxed", boxed)?;
    d.set_item("last_number_fallback", o.last_number_fallback)?;
    d.set_item("rel_tol", o.rel_tol)?;
    d.set_item("percent_as_fraction", o.percent_as_fraction)?;
    d.set_item("eval_points", o.eval_points)?;
    d.set_item("decimal_places", o.decimal_places)?;
    Ok(d)
}
