//! Verifying a JSON-lines file of `{"response": …, "gold": …}` records (the library side
//! of `cove verify math`).
//!
//! Each input line gives one output line: the input object with `correct`, `extracted`,
//! `gold_normalized` and `reason` added (other fields kept). A malformed line gives
//! `{"line": N, "error": "…"}` naming the line and the problem, and the rest of the file is
//! still verified. Blank lines are skipped. Lines are verified in parallel in chunks and
//! written in input order.

use super::{MathOptions, verify};
use rayon::prelude::*;
use serde_json::{Map, Value};
use std::io::{BufRead, Write};

/// Lines read before a chunk is verified in parallel and written out.
const CHUNK: usize = 4096;

/// Counts over one verified file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Records verified (malformed lines excluded).
    pub verified: usize,
    /// Records judged correct.
    pub correct: usize,
    /// Malformed lines, each reported as an error record.
    pub malformed: usize,
}

/// Reading the input or writing the output failed (a malformed record is not an error:
/// it is reported in the output and counted in [`Summary::malformed`]).
#[derive(Debug, thiserror::Error)]
pub enum JsonlError {
    /// Reading line `line` failed.
    #[error("reading input line {line}: {source}")]
    Read {
        /// 1-based line number.
        line: usize,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Write(#[from] std::io::Error),
}

/// Why one input line could not be verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// Not valid JSON.
    #[error("line {line}: invalid JSON: {msg}")]
    Json {
        /// 1-based line number.
        line: usize,
        /// The parser's message.
        msg: String,
    },
    /// Valid JSON but not an object.
    #[error("line {line}: expected a JSON object")]
    NotObject {
        /// 1-based line number.
        line: usize,
    },
    /// A required field is missing or has the wrong type.
    #[error("line {line}: field `{field}` must be {expected}")]
    Field {
        /// 1-based line number.
        line: usize,
        /// The field's name.
        field: &'static str,
        /// What it should be.
        expected: &'static str,
    },
}

fn parse_line(
    line_no: usize,
    text: &str,
) -> Result<(Map<String, Value>, String, String), LineError> {
    let v: Value = serde_json::from_str(text).map_err(|e| LineError::Json {
        line: line_no,
        msg: e.to_string(),
    })?;
    let Value::Object(obj) = v else {
        return Err(LineError::NotObject { line: line_no });
    };
    let response = match obj.get("response") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            return Err(LineError::Field {
                line: line_no,
                field: "response",
                expected: "a string",
            });
        }
    };
    let gold = match obj.get("gold") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(LineError::Field {
                line: line_no,
                field: "gold",
                expected: "a string or a number",
            });
        }
    };
    Ok((obj, gold, response))
}

fn process(line_no: usize, text: &str, opts: &MathOptions) -> (Value, Option<bool>) {
    match parse_line(line_no, text) {
        Ok((mut obj, gold, response)) => {
            let v = verify(&gold, &response, opts);
            obj.insert("correct".into(), Value::Bool(v.correct));
            obj.insert(
                "extracted".into(),
                v.extracted.map_or(Value::Null, Value::String),
            );
            obj.insert("gold_normalized".into(), Value::String(v.gold_normalized));
            obj.insert("reason".into(), Value::String(v.reason));
            (Value::Object(obj), Some(v.correct))
        }
        Err(e) => {
            let mut obj = Map::new();
            obj.insert("line".into(), Value::from(line_no));
            obj.insert("error".into(), Value::String(e.to_string()));
            (Value::Object(obj), None)
        }
    }
}

fn flush(
    chunk: &mut Vec<(usize, String)>,
    out: &mut impl Write,
    opts: &MathOptions,
    summary: &mut Summary,
) -> Result<(), JsonlError> {
    let results: Vec<(Value, Option<bool>)> = chunk
        .par_iter()
        .map(|(n, t)| process(*n, t, opts))
        .collect();
    for (record, outcome) in results {
        match outcome {
            Some(c) => {
                summary.verified += 1;
                summary.correct += usize::from(c);
            }
            None => summary.malformed += 1,
        }
        serde_json::to_writer(&mut *out, &record).map_err(std::io::Error::from)?;
        out.write_all(b"\n")?;
    }
    chunk.clear();
    Ok(())
}

/// Verifies every record of `input`, writing one JSON line per record to `output`.
pub fn verify_jsonl(
    input: impl BufRead,
    mut output: impl Write,
    opts: &MathOptions,
) -> Result<Summary, JsonlError> {
    let mut summary = Summary::default();
    let mut chunk = Vec::with_capacity(CHUNK);
    for (i, line) in input.lines().enumerate() {
        let line = line.map_err(|source| JsonlError::Read {
            line: i + 1,
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        chunk.push((i + 1, line));
        if chunk.len() == CHUNK {
            flush(&mut chunk, &mut output, opts, &mut summary)?;
        }
    }
    flush(&mut chunk, &mut output, opts, &mut summary)?;
    output.flush()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_lines_are_reported_and_the_rest_verified() {
        let input = "{\"response\": \"\\\\boxed{4}\", \"gold\": \"4\", \"id\": 7}\n\
                     not json\n\
                     \n\
                     {\"gold\": 3}\n\
                     {\"response\": \"so 2\", \"gold\": 27.0}\n";
        let mut out = Vec::new();
        let s = verify_jsonl(input.as_bytes(), &mut out, &MathOptions::default()).unwrap();
        assert_eq!(
            s,
            Summary {
                verified: 2,
                correct: 1,
                malformed: 2
            }
        );
        let lines: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["correct"], Value::Bool(true));
        assert_eq!(lines[0]["id"], Value::from(7));
        assert_eq!(lines[1]["line"], Value::from(2));
        assert!(
            lines[2]["error"]
                .as_str()
                .unwrap()
                .contains("line 4: field `response`")
        );
        assert_eq!(lines[3]["correct"], Value::Bool(false));
        assert_eq!(lines[3]["gold_normalized"], Value::from("27.0"));
    }
}
