//! Dataset loaders: JSONL and verl Parquet files into math and code training examples.
//!
//! Every file is first read as a sequence of JSON rows ([`read_rows`]): a `.jsonl` file
//! line by line, a `.parquet` file (verl's training format) record batch by record batch
//! through `arrow-json`, so nested Parquet columns (a `prompt` list of chat messages, a
//! `reward_model` struct, `extra_info`) become ordinary JSON. The task-specific loaders
//! then map a row's fields onto an example:
//!
//! - [`math`]: GSM8K (`question`/`answer` with `#### N`), MATH-500, AIME and AMC
//!   (`problem`/`answer`), verl (`prompt` messages, `reward_model.ground_truth`) or any
//!   field mapping ([`math::MathFields`]) into [`math::MathExample`].
//! - [`code`]: Cove's own code set, APPS/TACO (`input_output`), HumanEval and MBPP, and
//!   verl code rows, into [`code::CodeExample`] whose `tests` is the code verifier's tests
//!   object (`{"kind":"stdio"|"call"|"assert", ...}`).
//! - [`synth`]: the generator of the project's synthetic math set (`datasets/math/`).
//!
//! A row that cannot be mapped is an error naming the file and the row (1-based: the line
//! number for JSONL, the row index + 1 for Parquet) and the field at fault.

pub mod code;
pub mod math;
mod parquet_rows;
pub mod synth;

use crate::model::{Message, last_user_text};
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// Why a dataset file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The Parquet file could not be decoded.
    #[error("{path}: not a readable Parquet file: {message}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The decoder's message.
        message: String,
    },
    /// The file's extension is neither `.jsonl`/`.json` nor `.parquet`.
    #[error("{path}: unknown dataset format (expected .jsonl or .parquet)")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// One row is malformed or lacks a needed field.
    #[error("{path}: row {row}: {message}")]
    BadRow {
        /// The file.
        path: PathBuf,
        /// 1-based row number (the line number for JSONL).
        row: usize,
        /// What is wrong, naming the field.
        message: String,
    },
    /// The file holds no usable row, or its shape matches no known dataset layout.
    #[error("{path}: {message}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// What was expected.
        message: String,
    },
}

/// One raw row of a dataset file.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// 1-based position (the line number for JSONL, skipping nothing).
    pub number: usize,
    /// The row as a JSON object.
    pub value: serde_json::Value,
}

/// Reads every row of a `.jsonl` (or `.json` lines) or `.parquet` file as JSON objects.
/// Blank JSONL lines are skipped; a line that is not a JSON object is an error naming it.
pub fn read_rows(path: &Path) -> Result<Vec<Row>, DataError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    match ext.as_str() {
        "jsonl" | "json" | "ndjson" => read_jsonl(path),
        "parquet" => parquet_rows::read(path),
        _ => Err(DataError::UnknownFormat {
            path: path.to_path_buf(),
        }),
    }
}

fn read_jsonl(path: &Path) -> Result<Vec<Row>, DataError> {
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut rows = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| DataError::BadRow {
                path: path.to_path_buf(),
                row: i + 1,
                message: format!("not valid JSON: {e}"),
            })?;
        if !value.is_object() {
            return Err(DataError::BadRow {
                path: path.to_path_buf(),
                row: i + 1,
                message: "not a JSON object".to_string(),
            });
        }
        rows.push(Row {
            number: i + 1,
            value,
        });
    }
    Ok(rows)
}

/// A task's prompt: plain text, or chat messages to be rendered by a chat template.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// A single user turn.
    Text(String),
    /// A conversation (system / user turns) ending where the assistant should answer.
    Chat(Vec<Message>),
}

impl From<String> for Prompt {
    fn from(text: String) -> Self {
        Prompt::Text(text)
    }
}

impl From<&str> for Prompt {
    fn from(text: &str) -> Self {
        Prompt::Text(text.to_string())
    }
}

impl Prompt {
    /// The prompt as chat messages (a plain-text prompt becomes one user message).
    pub fn messages(&self) -> Vec<Message> {
        match self {
            Prompt::Text(text) => vec![Message::user(text)],
            Prompt::Chat(messages) => messages.clone(),
        }
    }

    /// The text of the last user turn (the problem statement), for models without a chat
    /// template such as the tiny demo policy.
    pub fn user_text(&self) -> &str {
        match self {
            Prompt::Text(text) => text,
            Prompt::Chat(messages) => last_user_text(messages),
        }
    }
}

/// Looks up a field by a dotted path (`reward_model.ground_truth`); a key that itself
/// contains dots is found first.
pub(crate) fn field<'v>(value: &'v serde_json::Value, key: &str) -> Option<&'v serde_json::Value> {
    match value.get(key) {
        Some(serde_json::Value::Null) => None,
        Some(v) => Some(v),
        None => key
            .split('.')
            .try_fold(value, |v, part| v.get(part))
            .filter(|v| !v.is_null()),
    }
}

/// A row's difficulty level, when it has one: `level` as a number (the synthetic sets) or
/// as MATH's string "Level N".
pub(crate) fn level(value: &serde_json::Value) -> Option<u32> {
    match field(value, "level") {
        Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|l| u32::try_from(l).ok()),
        Some(serde_json::Value::String(s)) => {
            s.trim().trim_start_matches("Level").trim().parse().ok()
        }
        _ => None,
    }
}

/// Error-building context for one row.
pub(crate) struct RowCtx<'a> {
    pub path: &'a Path,
    pub row: &'a Row,
}

impl RowCtx<'_> {
    /// A [`DataError::BadRow`] for this row.
    pub fn bad(&self, message: impl Into<String>) -> DataError {
        DataError::BadRow {
            path: self.path.to_path_buf(),
            row: self.row.number,
            message: message.into(),
        }
    }

    /// The field's value, or an error naming the missing field.
    pub fn get(&self, key: &str) -> Result<&serde_json::Value, DataError> {
        field(&self.row.value, key).ok_or_else(|| self.bad(format!("missing field `{key}`")))
    }

    /// The field as a string (numbers are written in JSON form, e.g. `27.0`).
    pub fn string(&self, key: &str) -> Result<String, DataError> {
        match self.get(key)? {
            serde_json::Value::String(s) => Ok(s.clone()),
            serde_json::Value::Number(n) => Ok(n.to_string()),
            other => Err(self.bad(format!(
                "field `{key}` must be a string or number, got {}",
                kind_of(other)
            ))),
        }
    }

    /// The field as a prompt: a string, or a list of `{role, content}` messages.
    pub fn prompt(&self, key: &str) -> Result<Prompt, DataError> {
        match self.get(key)? {
            serde_json::Value::String(s) => Ok(Prompt::Text(s.clone())),
            v @ serde_json::Value::Array(_) => {
                let messages: Vec<Message> = serde_json::from_value(v.clone()).map_err(|e| {
                    self.bad(format!(
                        "field `{key}` must be a list of {{role, content}} messages: {e}"
                    ))
                })?;
                if messages.is_empty() {
                    return Err(self.bad(format!("field `{key}` is an empty message list")));
                }
                Ok(Prompt::Chat(messages))
            }
            other => Err(self.bad(format!(
                "field `{key}` must be a string or a list of messages, got {}",
                kind_of(other)
            ))),
        }
    }

    /// An identifier: the field if given and present, else `{file stem}-{row}`.
    pub fn id(&self, key: Option<&str>) -> String {
        key.and_then(|k| field(&self.row.value, k))
            .map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_else(|| {
                let stem = self
                    .path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("row");
                format!("{stem}-{}", self.row.number)
            })
    }
}

/// A JSON value's kind, for error messages.
pub(crate) fn kind_of(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}
