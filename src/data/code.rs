//! Code datasets mapped onto the code verifier's tests object.
//!
//! The code verifier takes one of three test shapes:
//! `{"kind":"stdio","inputs":[..],"outputs":[..]}` (program reads stdin, prints stdout),
//! `{"kind":"call","fn_name":..,"inputs":[[args..],..],"outputs":[..]}` (function called
//! with each argument list) and `{"kind":"assert","code":..,"entry_point":..}` (test code
//! run after the solution). Public datasets are converted as follows:
//!
//! | layout | recognised by | tests |
//! |---|---|---|
//! | Cove (`datasets/code/`) | `tests` object | as is |
//! | APPS / TACO | `input_output` (JSON string) | `fn_name` → call, else stdio |
//! | HumanEval | `test` + `entry_point` | assert: `test` + `check(entry_point)` |
//! | MBPP | `test_list` | assert: `test_setup_code` + the asserts |
//! | verl code rows | `reward_model.ground_truth` | parsed like `input_output` |
//!
//! APPS stores some call-test outputs wrapped in a one-element list; they are passed
//! through unchanged (the verifier's call comparison decides).

use super::{DataError, Prompt, RowCtx, field, kind_of, read_rows};
use serde_json::{Value, json};
use std::path::Path;

/// One code task.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CodeExample {
    /// Row identifier.
    pub id: String,
    /// Where the row comes from (`data_source`, else the detected layout name).
    pub data_source: String,
    /// The problem statement shown to the model.
    pub prompt: Prompt,
    /// The code verifier's tests object.
    pub tests: Value,
    /// A reference solution when the dataset has one.
    pub solution: Option<String>,
    /// Difficulty level when the row has one (`level`: a number, or "Level N").
    pub level: Option<u32>,
}

impl CodeExample {
    /// The code verifier's test suite of this row (`tests`, parsed).
    pub fn test_suite(&self) -> Result<cove_verifiers::code::TestSuite, String> {
        serde_json::from_value(self.tests.clone())
            .map_err(|e| format!("row `{}`: field `tests`: {e}", self.id))
    }
}

/// The public layouts this loader understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeLayout {
    /// Cove's own set: `id`, `prompt`, `tests` (verifier shape), `solution`.
    Cove,
    /// APPS / TACO: `question`, `input_output` (JSON string), `solutions` (JSON string).
    Apps,
    /// HumanEval: `task_id`, `prompt`, `test`, `entry_point`, `canonical_solution`.
    Humaneval,
    /// MBPP: `task_id`, `text`, `code`, `test_list`, `test_setup_code`.
    Mbpp,
    /// verl: `prompt` messages, `reward_model.ground_truth` (an `input_output` JSON).
    Verl,
}

impl CodeLayout {
    /// Picks the layout from a row's fields.
    pub fn detect(row: &Value) -> Option<Self> {
        let has = |k: &str| row.get(k).is_some_and(|v| !v.is_null());
        if has("tests") && has("prompt") {
            Some(Self::Cove)
        } else if has("input_output") {
            Some(Self::Apps)
        } else if has("entry_point") && has("test") {
            Some(Self::Humaneval)
        } else if has("test_list") {
            Some(Self::Mbpp)
        } else if has("reward_model") && has("prompt") {
            Some(Self::Verl)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Cove => "cove",
            Self::Apps => "apps",
            Self::Humaneval => "humaneval",
            Self::Mbpp => "mbpp",
            Self::Verl => "verl",
        }
    }
}

/// Loads a code dataset; with `layout = None` it is detected from the first row.
pub fn load_code(path: &Path, layout: Option<CodeLayout>) -> Result<Vec<CodeExample>, DataError> {
    let rows = read_rows(path)?;
    let layout = match layout {
        Some(l) => l,
        None => {
            let first = rows.first().ok_or_else(|| DataError::Shape {
                path: path.to_path_buf(),
                message: "no rows".into(),
            })?;
            CodeLayout::detect(&first.value).ok_or_else(|| DataError::Shape {
                path: path.to_path_buf(),
                message: "row 1 matches no known code layout (Cove `tests`, APPS `input_output`, \
                          HumanEval `test`+`entry_point`, MBPP `test_list`, verl `reward_model`)"
                    .into(),
            })?
        }
    };
    rows.iter()
        .map(|row| convert(&RowCtx { path, row }, layout))
        .collect()
}

fn convert(ctx: &RowCtx<'_>, layout: CodeLayout) -> Result<CodeExample, DataError> {
    let row = &ctx.row.value;
    let source = || match field(row, "data_source") {
        Some(Value::String(s)) => s.clone(),
        _ => layout.name().to_string(),
    };
    let level = super::level(row);
    let optional_string = |key: &str| match field(row, key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        _ => None,
    };
    match layout {
        CodeLayout::Cove => {
            let tests = ctx.get("tests")?.clone();
            check_tests(ctx, "tests", &tests)?;
            Ok(CodeExample {
                id: ctx.id(Some("id")),
                data_source: source(),
                level,
                prompt: ctx.prompt("prompt")?,
                tests,
                solution: optional_string("solution"),
            })
        }
        CodeLayout::Apps => {
            let tests = input_output_tests(ctx, "input_output")?;
            let solution = match field(row, "solutions") {
                Some(Value::String(s)) if !s.trim().is_empty() => {
                    let list: Vec<String> = serde_json::from_str(s).map_err(|e| {
                        ctx.bad(format!(
                            "field `solutions` is not a JSON list of strings: {e}"
                        ))
                    })?;
                    list.into_iter().next()
                }
                Some(Value::Array(list)) => list.first().and_then(|v| v.as_str()).map(String::from),
                _ => None,
            };
            Ok(CodeExample {
                id: ctx.id(Some("problem_id")),
                data_source: source(),
                level,
                prompt: ctx.prompt("question")?,
                tests,
                solution,
            })
        }
        CodeLayout::Humaneval => {
            let entry_point = ctx.string("entry_point")?;
            let test = ctx.string("test")?;
            let prompt = ctx.string("prompt")?;
            Ok(CodeExample {
                id: ctx.id(Some("task_id")),
                data_source: source(),
                level,
                prompt: Prompt::Text(format!(
                    "Complete the following Python function.\n\n```python\n{prompt}```"
                )),
                tests: json!({
                    "kind": "assert",
                    "code": format!("{test}\n\ncheck({entry_point})\n"),
                    "entry_point": entry_point,
                }),
                solution: optional_string("canonical_solution")
                    .map(|body| format!("{prompt}{body}")),
            })
        }
        CodeLayout::Mbpp => {
            let asserts = match ctx.get("test_list")? {
                Value::Array(list) if !list.is_empty() => list
                    .iter()
                    .map(|v| {
                        v.as_str().map(String::from).ok_or_else(|| {
                            ctx.bad(format!(
                                "field `test_list` holds {}, not a string",
                                kind_of(v)
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                other => {
                    return Err(ctx.bad(format!(
                        "field `test_list` must be a non-empty list of asserts, got {}",
                        kind_of(other)
                    )));
                }
            };
            let entry_point = mbpp_entry_point(&asserts[0]).ok_or_else(|| {
                ctx.bad("field `test_list`: cannot find the function name in `assert name(...)`")
            })?;
            let setup = optional_string("test_setup_code").unwrap_or_default();
            let text = ctx.string("text")?;
            Ok(CodeExample {
                id: ctx.id(Some("task_id")),
                data_source: source(),
                level,
                prompt: Prompt::Text(format!(
                    "{text}\nYour code should pass this test:\n{}",
                    asserts[0]
                )),
                tests: json!({
                    "kind": "assert",
                    "code": format!("{setup}\n{}\n", asserts.join("\n")).trim_start().to_string(),
                    "entry_point": entry_point,
                }),
                solution: optional_string("code"),
            })
        }
        CodeLayout::Verl => Ok(CodeExample {
            id: ctx.id(Some("extra_info.index")),
            data_source: source(),
            level,
            prompt: ctx.prompt("prompt")?,
            tests: input_output_tests(ctx, "reward_model.ground_truth")?,
            solution: None,
        }),
    }
}

/// APPS/TACO `input_output` (a JSON string or object with `inputs`, `outputs` and an
/// optional `fn_name`) → a stdio or call tests object.
fn input_output_tests(ctx: &RowCtx<'_>, key: &str) -> Result<Value, DataError> {
    let parsed = match ctx.get(key)? {
        Value::String(s) => serde_json::from_str::<Value>(s)
            .map_err(|e| ctx.bad(format!("field `{key}` is not valid JSON: {e}")))?,
        v @ Value::Object(_) => v.clone(),
        other => {
            return Err(ctx.bad(format!(
                "field `{key}` must be a JSON object or string, got {}",
                kind_of(other)
            )));
        }
    };
    if parsed.get("kind").is_some() {
        check_tests(ctx, key, &parsed)?;
        return Ok(parsed);
    }
    let list = |name: &str| match parsed.get(name) {
        Some(Value::Array(items)) => Ok(items.clone()),
        _ => Err(ctx.bad(format!("field `{key}` has no `{name}` list"))),
    };
    let (inputs, outputs) = (list("inputs")?, list("outputs")?);
    if inputs.len() != outputs.len() || inputs.is_empty() {
        return Err(ctx.bad(format!(
            "field `{key}`: {} inputs but {} outputs (need the same, non-zero number)",
            inputs.len(),
            outputs.len()
        )));
    }
    match parsed.get("fn_name").and_then(|v| v.as_str()) {
        Some(fn_name) => Ok(json!({
            "kind": "call", "fn_name": fn_name, "inputs": inputs, "outputs": outputs,
        })),
        None => {
            // TACO sometimes stores stdio text as a list of lines.
            let text = |v: &Value, what: &str| -> Result<Value, DataError> {
                match v {
                    Value::String(_) => Ok(v.clone()),
                    Value::Array(lines) if lines.iter().all(Value::is_string) => Ok(Value::String(
                        lines
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join("\n"),
                    )),
                    other => Err(ctx.bad(format!(
                        "field `{key}`: a stdio {what} is {}, not text",
                        kind_of(other)
                    ))),
                }
            };
            let inputs = inputs
                .iter()
                .map(|v| text(v, "input"))
                .collect::<Result<Vec<_>, _>>()?;
            let outputs = outputs
                .iter()
                .map(|v| text(v, "output"))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(json!({ "kind": "stdio", "inputs": inputs, "outputs": outputs }))
        }
    }
}

/// Checks a tests object has a known `kind` and that kind's fields.
fn check_tests(ctx: &RowCtx<'_>, key: &str, tests: &Value) -> Result<(), DataError> {
    let kind = tests
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| ctx.bad(format!("field `{key}` has no string `kind`")))?;
    let needed: &[&str] = match kind {
        "stdio" => &["inputs", "outputs"],
        "call" => &["fn_name", "inputs", "outputs"],
        "assert" => &["code"],
        other => {
            return Err(ctx.bad(format!(
                "field `{key}.kind` is `{other}`; expected stdio, call or assert"
            )));
        }
    };
    for name in needed {
        if tests.get(name).is_none() {
            return Err(ctx.bad(format!("field `{key}` ({kind}) lacks `{name}`")));
        }
    }
    Ok(())
}

/// `assert name(args) == ...` → `name`.
fn mbpp_entry_point(assertion: &str) -> Option<String> {
    let rest = assertion.trim_start().strip_prefix("assert")?.trim_start();
    let rest = rest.trim_start_matches(['(', ' ']);
    let rest = rest
        .strip_prefix("set(")
        .or_else(|| rest.strip_prefix("math.isclose("))
        .unwrap_or(rest);
    let name: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty() && rest[name.len()..].starts_with('(')).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::mbpp_entry_point;

    #[test]
    fn mbpp_entry_points() {
        assert_eq!(
            mbpp_entry_point("assert min_cost([[1, 2]], 1, 1) == 8").as_deref(),
            Some("min_cost")
        );
        assert_eq!(
            mbpp_entry_point("assert set(similar_elements((3, 4), (5, 4))) == set((4,))")
                .as_deref(),
            Some("similar_elements")
        );
        assert_eq!(
            mbpp_entry_point("assert math.isclose(area(2), 12.56, rel_tol=0.001)").as_deref(),
            Some("area")
        );
        assert_eq!(mbpp_entry_point("x = 1"), None);
    }
}
