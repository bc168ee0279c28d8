//! Verifiable rewards that need no model.
//!
//! This crate deliberately does not depend on libtorch, so it builds in seconds and can
//! be used on its own (for example to score a dataset of responses offline).
//!
//! - [`math`]: the math-answer verifier ([`math::MathVerifier`], [`math::verify`]).
//! - [`reward`]: the [`Reward`] trait every verifier implements.
//! - [`code`]: the WASM-sandboxed Python code verifier.
//! - [`runtime`]: locating the sandbox's Python WebAssembly runtime and checking it
//!   against a pinned SHA-256 before it is ever executed.

pub mod code;
pub mod math;
pub mod reward;
pub mod runtime;

pub use reward::{Reward, Score};
