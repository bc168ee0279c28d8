//! The math verifier over a JSON-lines file, without the libtorch-linked `cove` binary:
//! `cargo run -p cove-verifiers --example verify_math -- IN.jsonl > OUT.jsonl` (one
//! `{"gold", "response"}` record a line in, one verdict line out; see
//! [`cove_verifiers::math::jsonl`]). `scripts/compare_math_verify.py` runs it.

use cove_verifiers::math::{MathOptions, jsonl::verify_jsonl};
use std::io::{BufReader, BufWriter};
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: verify_math IN.jsonl");
        return ExitCode::from(2);
    };
    let input = match std::fs::File::open(&path) {
        Ok(f) => BufReader::new(f),
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::from(2);
        }
    };
    let out = BufWriter::new(std::io::stdout().lock());
    match verify_jsonl(input, out, &MathOptions::default()) {
        Ok(summary) => {
            eprintln!(
                "{} verified, {} correct, {} malformed",
                summary.verified, summary.correct, summary.malformed
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{path}: {e}");
            ExitCode::FAILURE
        }
    }
}
