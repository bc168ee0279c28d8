//! `cove_verifiers._native`: the Rust half of the `cove_verifiers` Python package.
//!
//! The Python modules (`cove_verifiers.math`, `.code`, `.rewards`) are thin wrappers
//! around the functions here; they check argument types, find the sandbox runtime and
//! shape verl / TRL results. Everything that takes time (math batches, sandboxed runs,
//! loading the sandbox) runs with the GIL released, so Python threads keep running.
//!
//! Nothing here panics on user input: bad options, bad tests and bad arguments become
//! Python exceptions (`TypeError`, `ValueError`, or the module's own [`VerifierError`]
//! family).

mod code;
mod math;

use pyo3::create_exception;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

create_exception!(
    cove_verifiers,
    VerifierError,
    PyRuntimeError,
    "Base class of the errors that Cove's verifiers raise themselves (a RuntimeError; bad \
     arguments raise TypeError or ValueError instead)."
);

create_exception!(
    cove_verifiers,
    SandboxUnavailable,
    VerifierError,
    "The code sandbox cannot be loaded: no Python WebAssembly runtime was found, or the one \
     found is missing, corrupt or cannot be compiled. The message says how to get one."
);

/// The module `cove_verifiers._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("VerifierError", py.get_type::<VerifierError>())?;
    m.add("SandboxUnavailable", py.get_type::<SandboxUnavailable>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MAX_THREADS", math::MAX_THREADS)?;
    m.add_function(wrap_pyfunction!(math::math_verify, m)?)?;
    m.add_function(wrap_pyfunction!(math::math_verify_batch, m)?)?;
    m.add_function(wrap_pyfunction!(math::math_default_options, m)?)?;
    m.add_function(wrap_pyfunction!(code::init_sandbox, m)?)?;
    m.add_function(wrap_pyfunction!(code::sandbox_info, m)?)?;
    m.add_function(wrap_pyfunction!(code::run, m)?)?;
    m.add_function(wrap_pyfunction!(code::parse_tests, m)?)?;
    m.add_function(wrap_pyfunction!(code::code_verify_batch, m)?)?;
    m.add_function(wrap_pyfunction!(code::serve_worker, m)?)?;
    Ok(())
}
