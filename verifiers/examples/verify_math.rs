//! The math verifier over a JSON-lines file, without the libtorch-linked `cove` binary:
//! `cargo run -p cove-verifiers --example verify_math -- IN.jsonl [--options JSON] >
//! OUT.jsonl` (one `{"gold", "response"}` record a line in, one verdict line out; see
//! [`cove_verifiers::math::jsonl`]; `--options` sets fields of [`MathOptions`], such as
//! `{"decimal_places": 3}`). `scripts/compare_math_verify.py` runs it.

use cove_verifiers::math::{MathOptions, jsonl::verify_jsonl};
use std::io::{BufReader, BufWriter};
use std::process::ExitCode;

const USAGE: &str = "usage: verify_math IN.jsonl [--options JSON]";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let opts = match (args.next().as_deref(), args.next(), args.next()) {
        (None, _, _) => MathOptions::default(),
        (Some("--options"), Some(json), None) => match serde_json::from_str(&json) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("--options: {e}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let input = match std::fs::File::open(&path) {
        Ok(f) => BufReader::new(f),
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::from(2);
        }
    };
    let out = BufWriter::new(std::io::stdout().lock());
    match verify_jsonl(input, out, &opts) {
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
