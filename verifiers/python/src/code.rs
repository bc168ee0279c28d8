//! Bindings of the code verifier (`cove_verifiers::code`): one sandbox per process,
//! loaded on request from folders the Python side chooses, and verifiers on top of it.

use crate::SandboxUnavailable;
use crate::math::{check_threads, type_name};
use cove_verifiers::code::{
    CodeConfig, CodeVerifier, Execution, Extract, Limits, Report, RuntimeKind, Sandbox,
    Termination, TestSuite, WorkerCommand,
};
use cove_verifiers::runtime::{COMPILED_DIR_ENV, RUNTIME_DIR_ENV};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Longest deadline one execution may ask for, in seconds.
const MAX_TIMEOUT_S: f64 = 3600.0;

/// Largest memory cap, in MiB (the engine reserves 4 GiB per instance).
const MAX_MEMORY_MB: u64 = 4096;

/// Largest stdout cap, in bytes.
const MAX_OUTPUT_BYTES: usize = 1 << 30;

/// Most verifiers (distinct configurations) kept at once; more empty the cache.
const MAX_VERIFIERS: usize = 16;

/// The process's sandbox and where it came from.
struct Loaded {
    sandbox: Arc<Sandbox>,
    runtime_dir: PathBuf,
    compiled_dir: PathBuf,
    load_s: f64,
}

/// The sandbox, once loaded.
static SANDBOX: Mutex<Option<Arc<Loaded>>> = Mutex::new(None);

/// Verifiers running programs in this process, keyed by their configuration's JSON.
static VERIFIERS: LazyLock<Mutex<HashMap<String, Arc<CodeVerifier>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Verifiers running programs in worker processes, keyed by interpreter and
/// configuration.
static WORKER_VERIFIERS: LazyLock<Mutex<HashMap<String, Arc<CodeVerifier>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Most verifiers with worker processes kept at once (each holds its processes); more
/// empty that cache.
const MAX_WORKER_VERIFIERS: usize = 4;

/// What a worker's interpreter runs: import this module and serve (see [`serve_worker`]).
const WORKER_SCRIPT: &str = "from cove_verifiers import _native; _native.serve_worker()";

fn kind_name(kind: RuntimeKind) -> &'static str {
    match kind {
        RuntimeKind::Component => "component",
        RuntimeKind::Preview1 => "preview1",
    }
}

fn info_dict<'py>(py: Python<'py>, l: &Loaded) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("kind", kind_name(l.sandbox.kind()))?;
    d.set_item("runtime_dir", l.runtime_dir.display().to_string())?;
    d.set_item("compiled_dir", l.compiled_dir.display().to_string())?;
    d.set_item("load_s", l.load_s)?;
    Ok(d)
}

/// `init_sandbox(kind, runtime_dir, compiled_dir)`: loads the process's sandbox
/// (`kind` is "component" or "preview1") from `runtime_dir`, caching compiled code in
/// `compiled_dir`, with the GIL released (the first compilation takes tens of seconds,
/// loading from the cache milliseconds). Does nothing when a sandbox is already loaded.
/// Returns `sandbox_info()`. Raises `SandboxUnavailable` with Cove's message on failure.
#[pyfunction]
pub fn init_sandbox<'py>(
    py: Python<'py>,
    kind: &str,
    runtime_dir: PathBuf,
    compiled_dir: PathBuf,
) -> PyResult<Bound<'py, PyDict>> {
    let kind: RuntimeKind = enum_option("kind", kind)?;
    let loaded = py
        .detach(|| {
            let mut slot = SANDBOX.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(l) = slot.as_ref() {
                return Ok::<_, String>(l.clone());
            }
            let start = Instant::now();
            let sandbox =
                Sandbox::from_dirs(kind, &runtime_dir, &compiled_dir).map_err(|e| e.to_string())?;
            let l = Arc::new(Loaded {
                sandbox: Arc::new(sandbox),
                runtime_dir,
                compiled_dir,
                load_s: start.elapsed().as_secs_f64(),
            });
            *slot = Some(l.clone());
            Ok(l)
        })
        .map_err(SandboxUnavailable::new_err)?;
    info_dict(py, &loaded)
}

/// `sandbox_info()`: `{"kind", "runtime_dir", "compiled_dir", "load_s"}` of the loaded
/// sandbox, or `None` before `init_sandbox`.
#[pyfunction]
pub fn sandbox_info(py: Python<'_>) -> PyResult<Option<Bound<'_, PyDict>>> {
    let loaded = SANDBOX
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    loaded.map(|l| info_dict(py, &l)).transpose()
}

fn loaded() -> PyResult<Arc<Loaded>> {
    SANDBOX
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .ok_or_else(|| {
            SandboxUnavailable::new_err(
                "the sandbox is not loaded; call cove_verifiers.code.load_sandbox() (or any code function) first",
            )
        })
}

/// Checks and builds per-execution limits.
fn limits(timeout_s: f64, memory_mb: u64, max_output_bytes: usize) -> PyResult<Limits> {
    if !timeout_s.is_finite() || timeout_s <= 0.0 || timeout_s > MAX_TIMEOUT_S {
        return Err(PyValueError::new_err(format!(
            "timeout_s must be a number of seconds in (0, {MAX_TIMEOUT_S}], got {timeout_s}"
        )));
    }
    if memory_mb == 0 || memory_mb > MAX_MEMORY_MB {
        return Err(PyValueError::new_err(format!(
            "memory_mb must be between 1 and {MAX_MEMORY_MB}, got {memory_mb}"
        )));
    }
    if max_output_bytes == 0 || max_output_bytes > MAX_OUTPUT_BYTES {
        return Err(PyValueError::new_err(format!(
            "max_output_bytes must be between 1 and {MAX_OUTPUT_BYTES}, got {max_output_bytes}"
        )));
    }
    Ok(Limits {
        time: Duration::from_secs_f64(timeout_s),
        memory_bytes: (memory_mb as usize) << 20,
        stdout_bytes: max_output_bytes,
        ..Limits::default()
    })
}

/// The standard input of `run`: `str` (encoded as UTF-8) or `bytes`.
fn stdin_bytes(stdin: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(s) = stdin.cast::<PyString>() {
        return Ok(s.to_cow()?.as_bytes().to_vec());
    }
    if let Ok(b) = stdin.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    Err(PyTypeError::new_err(format!(
        "stdin must be str or bytes, got {}",
        type_name(stdin)
    )))
}

fn execution_dict<'py>(py: Python<'py>, e: Execution) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let (status, exit_code, detail) = match e.termination {
        Termination::Exited(code) => ("exited", Some(code), String::new()),
        Termination::SyntaxError => ("syntax_error", None, String::new()),
        Termination::TimeLimit => ("time_limit", None, String::new()),
        Termination::MemoryLimit => ("memory_limit", None, String::new()),
        Termination::OutputLimit => ("output_limit", None, String::new()),
        Termination::Trap(msg) => ("trap", None, msg),
    };
    d.set_item("status", status)?;
    d.set_item("exit_code", exit_code)?;
    d.set_item("stdout", String::from_utf8_lossy(&e.stdout))?;
    d.set_item("stderr", String::from_utf8_lossy(&e.stderr))?;
    d.set_item("elapsed_s", e.elapsed.as_secs_f64())?;
    d.set_item("detail", detail)?;
    Ok(d)
}

/// `run(code, stdin, timeout_s, memory_mb, max_output_bytes)`: runs `code` once in a
/// fresh sandbox instance with the GIL released; returns `{"status", "exit_code",
/// "stdout", "stderr", "elapsed_s", "detail"}`.
#[pyfunction]
#[pyo3(signature = (code, stdin, timeout_s, memory_mb, max_output_bytes))]
pub fn run<'py>(
    py: Python<'py>,
    code: String,
    stdin: &Bound<'py, PyAny>,
    timeout_s: f64,
    memory_mb: u64,
    max_output_bytes: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let limits = limits(timeout_s, memory_mb, max_output_bytes)?;
    let stdin = stdin_bytes(stdin)?;
    let l = loaded()?;
    let exec = py.detach(|| l.sandbox.run(&code, &stdin, &limits));
    execution_dict(py, exec)
}

/// Parses tests in Cove's TestSuite JSON and checks their shape; the error is Cove's
/// message (serde's for a malformed object, `SuiteError`'s for a bad shape).
fn parse_suite(json: &str) -> Result<TestSuite, String> {
    let suite: TestSuite = serde_json::from_str(json).map_err(|e| format!("invalid tests: {e}"))?;
    suite
        .validate()
        .map_err(|e| format!("invalid tests: {e}"))?;
    Ok(suite)
}

/// `parse_tests(tests_json)`: checks tests in Cove's TestSuite JSON and returns their
/// number of cases; raises `ValueError` with Cove's message when they are invalid.
#[pyfunction]
pub fn parse_tests(tests_json: &str) -> PyResult<usize> {
    parse_suite(tests_json)
        .map(|s| s.len())
        .map_err(PyValueError::new_err)
}

/// Reads a kebab-case enum option through serde, so the message lists the choices.
fn enum_option<T: serde::de::DeserializeOwned>(name: &str, value: &str) -> PyResult<T> {
    serde_json::from_value(serde_json::Value::from(value))
        .map_err(|e| PyValueError::new_err(format!("{name}: {e}")))
}

/// The verifier of `config` over the loaded sandbox, built once per configuration: with
/// `worker_python`, its programs run in worker processes of that interpreter, which load
/// the same runtime. Call without the GIL: building one starts its thread pool (and its
/// workers, waiting until each has loaded its sandbox).
fn verifier(
    l: &Loaded,
    mut config: CodeConfig,
    worker_python: Option<PathBuf>,
) -> Result<Arc<CodeVerifier>, String> {
    config.runtime = l.sandbox.kind();
    let json = serde_json::to_string(&config).map_err(|e| e.to_string())?;
    let (cache, cap, key) = match &worker_python {
        None => (&VERIFIERS, MAX_VERIFIERS, json),
        Some(python) => (
            &WORKER_VERIFIERS,
            MAX_WORKER_VERIFIERS,
            format!("{} {json}", python.display()),
        ),
    };
    let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(v) = cache.get(&key) {
        return Ok(v.clone());
    }
    let mut v = CodeVerifier::with_sandbox(l.sandbox.clone(), config).map_err(|e| e.to_string())?;
    if let Some(python) = worker_python {
        v = v
            .into_worker_processes(WorkerCommand {
                program: python,
                args: vec!["-c".into(), WORKER_SCRIPT.into()],
                env: vec![
                    (RUNTIME_DIR_ENV.into(), l.runtime_dir.clone().into()),
                    (COMPILED_DIR_ENV.into(), l.compiled_dir.clone().into()),
                ],
            })
            .map_err(|e| e.to_string())?;
    }
    let v = Arc::new(v);
    if cache.len() >= cap {
        cache.clear();
    }
    cache.insert(key, v.clone());
    Ok(v)
}

fn report_dict<'py>(py: Python<'py>, r: &Report) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("score", r.score)?;
    d.set_item("passed", r.passed)?;
    d.set_item("total", r.total)?;
    let verdicts = PyList::empty(py);
    for v in &r.verdicts {
        let vd = PyDict::new(py);
        let name = serde_json::to_value(v.verdict)
            .ok()
            .and_then(|n| n.as_str().map(str::to_string))
            .unwrap_or_else(|| format!("{:?}", v.verdict));
        vd.set_item("verdict", name)?;
        vd.set_item("detail", &v.detail)?;
        verdicts.append(vd)?;
    }
    d.set_item("verdicts", verdicts)?;
    Ok(d)
}

/// `code_verify_batch(items, threads, timeout_s, memory_mb, max_output_bytes, scoring,
/// stop_at_first_failure, extract, worker_python=None)`: extracts each response's program
/// and runs it against its tests, over `(response, tests_json)` pairs on `threads` threads
/// (0: one per core) with the GIL released, in input order; one item is `code.verify`.
/// With `worker_python` (an interpreter that can import this package), the programs run
/// in that many worker processes of it, started once per configuration and kept: threads
/// of one process barely scale (see `cove_verifiers::code::worker`). Every item's tests
/// are checked first; a bad one raises `ValueError` naming its index.
#[pyfunction]
#[pyo3(signature = (items, threads, timeout_s, memory_mb, max_output_bytes, scoring, stop_at_first_failure, extract, worker_python=None))]
#[allow(clippy::too_many_arguments)]
pub fn code_verify_batch<'py>(
    py: Python<'py>,
    items: Vec<(String, String)>,
    threads: usize,
    timeout_s: f64,
    memory_mb: u64,
    max_output_bytes: usize,
    scoring: &str,
    stop_at_first_failure: bool,
    extract: &str,
    worker_python: Option<PathBuf>,
) -> PyResult<Vec<Bound<'py, PyDict>>> {
    check_threads(threads)?;
    let config = CodeConfig {
        limits: limits(timeout_s, memory_mb, max_output_bytes)?,
        scoring: enum_option("scoring", scoring)?,
        stop_at_first_failure,
        extract: enum_option::<Extract>("extract", extract)?,
        threads,
        ..CodeConfig::default()
    };
    let suites = items
        .iter()
        .enumerate()
        .map(|(i, (_, t))| {
            parse_suite(t).map_err(|e| PyValueError::new_err(format!("item {i}: {e}")))
        })
        .collect::<PyResult<Vec<TestSuite>>>()?;
    let l = loaded()?;
    let pairs: Vec<(&str, &TestSuite)> = items
        .iter()
        .zip(&suites)
        .map(|((r, _), s)| (r.as_str(), s))
        .collect();
    let reports = py
        .detach(|| Ok::<_, String>(verifier(&l, config, worker_python)?.verify_batch(&pairs)))
        .map_err(crate::VerifierError::new_err)?;
    reports.iter().map(|r| report_dict(py, r)).collect()
}

/// `serve_worker()`: the body of a worker process that `code_verify_batch` starts: serves
/// verification jobs on stdin/stdout until stdin closes, then exits the process. Raises
/// `RuntimeError` in a process that was not started as a worker.
#[pyfunction]
pub fn serve_worker() -> PyResult<()> {
    cove_verifiers::code::serve_if_worker();
    Err(PyRuntimeError::new_err(
        "serve_worker(): this process was not started as a sandbox worker \
         (code_verify_batch starts workers itself)",
    ))
}
