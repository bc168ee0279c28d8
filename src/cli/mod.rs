//! The command line (feature `cli`): argument parsing, progress bars, Ctrl-C handling,
//! plots and the demo. The library below it builds without any of them.

pub mod commands;
pub mod demo;
pub mod eval;
pub mod plot;
pub mod rollout;
pub mod train;
