//! Batch verification of a JSONL file: the library side of `cove verify code`.
//!
//! Each input line is `{"response": "...", "tests": {...}}` (other fields are ignored,
//! so a dataset line with a `response` added works). Each output line is
//! `{"line": N, "score", "passed", "total", "verdicts": [...]}` in input order, or
//! `{"line": N, "error": "..."}` for a line that cannot be read; the other lines still run.

use super::{CodeError, CodeVerifier, Report, TestSuite};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

#[derive(serde::Deserialize)]
struct InputLine {
    response: String,
    tests: TestSuite,
}

#[derive(serde::Serialize)]
struct OutputLine<'a> {
    line: usize,
    #[serde(flatten)]
    report: &'a Report,
}

#[derive(serde::Serialize)]
struct ErrorLine<'a> {
    line: usize,
    error: &'a str,
}

/// A line that could not be verified.
#[derive(Debug, Clone, PartialEq)]
pub struct LineError {
    /// 1-based line number in the input file.
    pub line: usize,
    /// What is wrong with it (names the field when serde can).
    pub message: String,
}

/// What [`verify_jsonl`] did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JsonlSummary {
    /// Lines verified.
    pub verified: usize,
    /// Verified lines whose every case passed.
    pub all_passed: usize,
    /// Lines that could not be read, in order.
    pub errors: Vec<LineError>,
}

/// Verifies every line of `input` with `verifier` (in parallel) and writes one JSON line
/// per input line to `out`. Blank lines are skipped. Fails only on I/O errors; bad lines
/// are reported in the summary and as `error` lines.
pub fn verify_jsonl(verifier: &CodeVerifier, input: &Path, out: &mut impl Write) -> Result<JsonlSummary, CodeError> {
    let io_err = |source| CodeError::Io {
        path: input.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(input).map_err(io_err)?;
    let mut parsed: Vec<(usize, Result<InputLine, String>)> = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_err)?;
        if line.trim().is_empty() {
            continue;
        }
        let item = serde_json::from_str::<InputLine>(&line)
            .map_err(|e| e.to_string())
            .and_then(|item| match item.tests.validate() {
                Ok(()) => Ok(item),
                Err(e) => Err(e.to_string()),
            });
        parsed.push((i + 1, item));
    }
    let good: Vec<(&str, &TestSuite)> = parsed
        .iter()
        .filter_map(|(_, item)| item.as_ref().ok().map(|it| (it.response.as_str(), &it.tests)))
        .collect();
    let mut reports = verifier.verify_batch(&good).into_iter();
    let mut summary = JsonlSummary::default();
    let write_err = |source| CodeError::Io {
        path: "<output>".into(),
        source,
    };
    for (line, item) in &parsed {
        let json = match item {
            Ok(_) => {
                let report = reports.next().expect("one report per good line");
                summary.verified += 1;
                summary.all_passed += usize::from(report.all_passed());
                serde_json::to_string(&OutputLine { line: *line, report: &report })
            }
            Err(message) => {
                let message = format!("{}:{line}: {message}", input.display());
                summary.errors.push(LineError { line: *line, message: message.clone() });
                serde_json::to_string(&ErrorLine { line: *line, error: &message })
            }
        }
        .expect("reports always serialise");
        writeln!(out, "{json}").map_err(write_err)?;
    }
    out.flush().map_err(write_err)?;
    Ok(summary)
}
