//! Math datasets: a problem statement and a gold answer per row.

use super::{DataError, Prompt, RowCtx, read_rows};
use std::path::Path;

/// One math task: what to ask and the gold answer the math verifier checks against.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MathExample {
    /// Row identifier (the dataset's own id field, else `{file stem}-{row}`).
    pub id: String,
    /// Where the row comes from (verl's `data_source`, else the file stem).
    pub data_source: String,
    /// The question.
    pub prompt: Prompt,
    /// The gold answer, in the dataset's form (a number, LaTeX, `27.0`, ...).
    pub answer: String,
    /// Difficulty level when the dataset has one (`level` in MATH, a string "Level N",
    /// and in the synthetic set, a number).
    pub level: Option<u32>,
}

/// How the gold answer is written in its field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerStyle {
    /// The field is the answer itself.
    Plain,
    /// A worked solution ending in `#### N` (GSM8K): the answer is the text after the
    /// last `####`.
    Gsm8k,
}

/// Which fields of a row hold the prompt, the answer and the id (dotted paths reach into
/// nested objects, e.g. `reward_model.ground_truth`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MathFields {
    /// The prompt: a string, or a list of `{role, content}` messages.
    pub prompt: String,
    /// The gold answer.
    pub answer: String,
    /// How the answer field is written.
    pub answer_style: AnswerStyle,
    /// The id field, if any.
    pub id: Option<String>,
    /// The data-source field, if any.
    pub data_source: Option<String>,
}

impl MathFields {
    /// GSM8K: `question`, `answer` ending in `#### N`.
    pub fn gsm8k() -> Self {
        Self {
            prompt: "question".into(),
            answer: "answer".into(),
            answer_style: AnswerStyle::Gsm8k,
            id: None,
            data_source: None,
        }
    }

    /// MATH-500, AIME, AMC and the synthetic set: `problem`, `answer` (`id` when present;
    /// MATH-500 calls it `unique_id`).
    pub fn problem_answer() -> Self {
        Self {
            prompt: "problem".into(),
            answer: "answer".into(),
            answer_style: AnswerStyle::Plain,
            id: Some("id".into()),
            data_source: None,
        }
    }

    /// verl's RL format: `prompt` (chat messages), `reward_model.ground_truth`,
    /// `data_source`, `extra_info.index`.
    pub fn verl() -> Self {
        Self {
            prompt: "prompt".into(),
            answer: "reward_model.ground_truth".into(),
            answer_style: AnswerStyle::Plain,
            id: Some("extra_info.index".into()),
            data_source: Some("data_source".into()),
        }
    }

    /// Picks the layout from a row's fields: `reward_model` → verl, `problem` + `answer`
    /// → MATH-style, `question` + `answer` → GSM8K.
    pub fn detect(row: &serde_json::Value) -> Option<Self> {
        let has = |k: &str| row.get(k).is_some_and(|v| !v.is_null());
        if has("reward_model") && has("prompt") {
            Some(Self::verl())
        } else if has("problem") && has("answer") {
            let mut fields = Self::problem_answer();
            if !has("id") && has("unique_id") {
                fields.id = Some("unique_id".into());
            }
            Some(fields)
        } else if has("question") && has("answer") {
            Some(Self::gsm8k())
        } else {
            None
        }
    }
}

/// Loads a math dataset (`.jsonl` or verl `.parquet`). With `fields = None` the layout is
/// detected from the first row ([`MathFields::detect`]).
pub fn load_math(path: &Path, fields: Option<&MathFields>) -> Result<Vec<MathExample>, DataError> {
    let rows = read_rows(path)?;
    let detected;
    let fields = match fields {
        Some(f) => f,
        None => {
            let first = rows.first().ok_or_else(|| DataError::Shape {
                path: path.to_path_buf(),
                message: "no rows".into(),
            })?;
            detected = MathFields::detect(&first.value).ok_or_else(|| DataError::Shape {
                path: path.to_path_buf(),
                message: "row 1 matches no known math layout (need `problem`+`answer`, \
                          `question`+`answer` or verl `prompt`+`reward_model`); pass a field mapping"
                    .into(),
            })?;
            &detected
        }
    };
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("dataset")
        .to_string();
    rows.iter()
        .map(|row| {
            let ctx = RowCtx { path, row };
            let raw = ctx.string(&fields.answer)?;
            let answer = match fields.answer_style {
                AnswerStyle::Plain => raw.trim().to_string(),
                AnswerStyle::Gsm8k => raw
                    .rsplit_once("####")
                    .map(|(_, a)| a.trim().to_string())
                    .ok_or_else(|| {
                        ctx.bad(format!(
                            "field `{}` has no `#### answer` line",
                            fields.answer
                        ))
                    })?,
            };
            if answer.is_empty() {
                return Err(ctx.bad(format!("field `{}` is an empty answer", fields.answer)));
            }
            let level = super::level(&row.value);
            Ok(MathExample {
                id: ctx.id(fields.id.as_deref()),
                data_source: match &fields.data_source {
                    Some(key) => ctx.string(key)?,
                    None => stem.clone(),
                },
                prompt: ctx.prompt(&fields.prompt)?,
                answer,
                level,
            })
        })
        .collect()
}
