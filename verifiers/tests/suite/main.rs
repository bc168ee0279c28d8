//! cove-verifiers' integration tests, one binary (one link of wasmtime instead of one
//! per file): each module is one verifier area.

mod code_formats;
mod code_hostile;
mod code_problems;
mod math_corpus;
mod math_datasets;
mod math_fuzz;
