//! The Python tool: tool-integrated reasoning in the code verifier's sandbox.
//!
//! The policy calls the tool in one of two formats ([`ToolFormat`]): a fenced program
//! (```` ```python ... ``` ````, the format of ReTool and SimpleTIR), whose output comes
//! back inline as a fenced `output` block after which the policy continues its message;
//! or, where the model's chat template has one, Qwen2.5's function call
//! (`<tool_call>{"name": "python", "arguments": {"code": ...}}</tool_call>`), whose output
//! comes back as a `tool` message rendered by that template. The turn stops where the
//! call is complete, and the program runs in the embedded sandbox under the code
//! verifier's per-call limits (time, memory, output). A turn without a call is the final
//! answer, scored by the wrapped [`Reward`] over the whole transcript.
//!
//! **Sessions.** A name defined in one call is visible in the next call of the same
//! episode, and in no other episode. Each call runs in a fresh sandbox instance (the
//! sandbox's isolation guarantee), so the session is kept by replaying: the call's driver
//! program first runs the episode's earlier programs with their output discarded (each in
//! its own `try`, so one that raised leaves what it did before raising, as in a REPL),
//! then the new one. Programs that ended at a limit (time, memory, output) or crashed the
//! guest are not replayed. The replay counts towards the call's time limit, and anything
//! nondeterministic (the clock, unseeded `random`) is recomputed.
//!
//! **Output.** What the program prints, then (on an exception) its traceback; a last
//! line that is an expression prints its `repr`, as a REPL does. Cut at
//! `max_output_chars` (head and tail kept). A limit, a malformed call or a sandbox
//! failure becomes an error message in the output, never a failed run.

use super::{Environment, Observation, Placement, Reply, ToolCall};
use crate::data::Prompt;
use crate::model::{Message, Policy};
use cove_verifiers::code::{CodeVerifier, Execution, Limits, Termination};
use cove_verifiers::{Reward, Score};
use regex::Regex;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

/// The system prompt that tells the policy how to call the tool in [`ToolFormat::Fenced`].
pub const FENCED_INSTRUCTIONS: &str = "You can run Python code. To run a program, write it \
in a ```python block; its output comes back in an ```output block, and the variables you \
define stay available to later programs. When you know the answer, write it as \
\\boxed{ANSWER}.";

/// The system prompt that tells the policy how to call the tool in
/// [`ToolFormat::ToolCall`] (the function-call JSON of Qwen2.5's template).
pub const TOOL_CALL_INSTRUCTIONS: &str = "You can run Python code with the `python` tool. \
To call it, write\n<tool_call>\n{\"name\": \"python\", \"arguments\": {\"code\": \
\"print(2 + 2)\"}}\n</tool_call>\nIts output comes back as the tool's reply, and the \
variables you define stay available to later calls. When you know the answer, write it \
as \\boxed{ANSWER}.";

/// How the policy calls the tool and reads its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ToolFormat {
    /// The model's own: [`ToolFormat::ToolCall`] when its chat template has a
    /// `<tool_call>` format (Qwen2.5's), else [`ToolFormat::Fenced`].
    #[default]
    Auto,
    /// A fenced ```` ```python ```` program; the output comes back inline in a fenced
    /// `output` block and the policy continues its message (ReTool, SimpleTIR).
    Fenced,
    /// `<tool_call>{"name": "python", "arguments": {"code": ...}}</tool_call>`; the output
    /// comes back as a `tool` message through the chat template.
    ToolCall,
}

impl ToolFormat {
    /// [`ToolFormat::Auto`] decided for `policy`'s chat template; the others as they are.
    pub fn resolve(self, policy: &Policy) -> ToolFormat {
        let has_tool_calls = || {
            policy
                .chat_template
                .as_ref()
                .is_some_and(|t| t.source().contains("<tool_call>"))
        };
        match self {
            ToolFormat::Auto if has_tool_calls() => ToolFormat::ToolCall,
            ToolFormat::Auto => ToolFormat::Fenced,
            other => other,
        }
    }
}

/// The driver that runs one call: it reads `{"history": [...], "cell": "..."}` from
/// stdin, replays the history silently, then runs the cell (see the module docs).
const DRIVER: &str = r#"import ast, io, json, sys, traceback
_cove = json.loads(sys.stdin.read())
_cove_streams = (sys.stdout, sys.stderr)
sys.stdout = sys.stderr = io.StringIO()
for _cove_cell in _cove.pop("history"):
    try:
        exec(compile(_cove_cell, "<cell>", "exec"), globals())
    except BaseException:
        pass
_cove_cell = None
sys.stdout, sys.stderr = _cove_streams
del _cove_streams
try:
    _cove_tree = ast.parse(_cove["cell"], "<cell>")
    _cove_last = None
    if _cove_tree.body and isinstance(_cove_tree.body[-1], ast.Expr):
        _cove_last = ast.Expression(_cove_tree.body.pop().value)
    exec(compile(_cove_tree, "<cell>", "exec"), globals())
    if _cove_last is not None:
        _cove_value = eval(compile(_cove_last, "<cell>", "eval"), globals())
        if _cove_value is not None:
            print(repr(_cove_value))
except SystemExit:
    pass
except BaseException as _cove_error:
    sys.stdout.flush()
    traceback.print_exception(type(_cove_error), _cove_error, _cove_error.__traceback__.tb_next, file=sys.stderr)
    sys.exit(1)
"#;

/// A complete fenced Python program: the code between its fences.
static PROGRAM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?s)```(?:python|py)[ \t]*\n(.*?)```").expect("the program pattern compiles")
});

/// A complete `<tool_call>` block: the JSON between its tags.
static TOOL_CALL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?s)<tool_call>(.*?)</tool_call>").expect("the tool-call pattern compiles")
});

/// The first complete fenced Python program in `text`, if any.
pub fn program_in(text: &str) -> Option<&str> {
    PROGRAM
        .captures(text)
        .and_then(|c| c.get(1))
        .map(|m| m.as_str())
}

/// The program of the first complete `<tool_call>` in `text`: `None` when there is none,
/// `Some(Err(why))` when it does not call `python` with a `code` string (its `arguments`
/// an object, or that object as a JSON string, as some models write it).
pub fn tool_call_in(text: &str) -> Option<Result<String, String>> {
    let body = TOOL_CALL.captures(text)?.get(1)?.as_str().trim();
    let call: serde_json::Value = match serde_json::from_str(body) {
        Ok(call) => call,
        Err(e) => return Some(Err(format!("the tool call is not JSON: {e}"))),
    };
    if call["name"] != "python" {
        return Some(Err(format!(
            "unknown tool {}; the tool is `python`",
            call["name"]
        )));
    }
    let arguments = match &call["arguments"] {
        serde_json::Value::String(text) => serde_json::from_str(text).unwrap_or_default(),
        other => other.clone(),
    };
    Some(match arguments["code"].as_str() {
        Some(code) => Ok(code.to_string()),
        None => Err("the call's arguments have no `code` string".to_string()),
    })
}

/// Where the tool's programs run: the code verifier's sandbox (in this process or in its
/// worker processes, [`CodeVerifier`]) in training; the benchmark also plugs in
/// `cove serve`'s HTTP endpoint and plain `python3` subprocesses to compare against.
pub trait ToolRunner: Send + Sync {
    /// Runs `code` once with `stdin` under `limits`. An error means the runner failed,
    /// not the program (whose failures are in the [`Execution`]).
    fn run(&self, code: &str, stdin: &[u8], limits: &Limits) -> Result<Execution, String>;
}

impl ToolRunner for CodeVerifier {
    fn run(&self, code: &str, stdin: &[u8], limits: &Limits) -> Result<Execution, String> {
        CodeVerifier::run(self, code, stdin, limits)
    }
}

/// One episode's Python session: the programs run so far that the next call replays.
#[derive(Debug, Default, Clone)]
pub struct PythonSession {
    history: Vec<String>,
}

/// Tool-integrated reasoning with a stateful Python tool; see the module docs.
pub struct CodeInterpreter<R> {
    reward: R,
    runner: Arc<dyn ToolRunner>,
    limits: Limits,
    max_output_chars: usize,
    format: ToolFormat,
}

impl<R> CodeInterpreter<R> {
    /// The tool over `runner`'s sandbox (in process or in its worker processes) with
    /// per-call `limits`, showing the policy at most `max_output_chars` of each output;
    /// final answers scored by `reward`.
    pub fn new(
        reward: R,
        runner: Arc<dyn ToolRunner>,
        limits: Limits,
        max_output_chars: usize,
    ) -> Self {
        CodeInterpreter {
            reward,
            runner,
            limits,
            max_output_chars,
            format: ToolFormat::Fenced,
        }
    }

    /// The same tool called in `format` (resolve [`ToolFormat::Auto`] for the policy
    /// first; it reads as fenced). The default is [`ToolFormat::Fenced`].
    pub fn with_format(mut self, format: ToolFormat) -> Self {
        self.format = format;
        self
    }

    /// The program a turn calls the tool with, if it does (`Err`: a malformed call).
    fn called(&self, turn: &str) -> Option<Result<String, String>> {
        match self.format {
            ToolFormat::ToolCall => tool_call_in(turn),
            _ => program_in(turn).map(|p| Ok(p.to_string())),
        }
    }

    /// Runs `program` in `session` (see the module docs); returns the text the policy
    /// reads (inside the output block) and whether the call failed.
    pub fn call(&self, session: &mut PythonSession, program: &str) -> (String, bool) {
        let input = serde_json::json!({"history": session.history, "cell": program});
        let run = self
            .runner
            .run(DRIVER, input.to_string().as_bytes(), &self.limits);
        let (text, error, replay) = match run {
            Ok(execution) => self.describe(&execution),
            Err(why) => (format!("the sandbox failed: {why}"), true, false),
        };
        if replay {
            session.history.push(program.to_string());
        }
        (cut(&text, self.max_output_chars), error)
    }

    /// The policy's view of one execution: (text, failed, replay in later calls).
    fn describe(&self, execution: &Execution) -> (String, bool, bool) {
        let stdout = String::from_utf8_lossy(&execution.stdout);
        let stderr = String::from_utf8_lossy(&execution.stderr);
        let both = |note: &str| format!("{stdout}{stderr}{note}");
        match &execution.termination {
            Termination::Exited(0) => (stdout.into_owned(), false, true),
            Termination::Exited(_) | Termination::SyntaxError => (both(""), true, true),
            Termination::TimeLimit => (
                both(&format!(
                    "TimeoutError: the program ran past the {:.0} s limit",
                    self.limits.time.as_secs_f64()
                )),
                true,
                false,
            ),
            Termination::MemoryLimit => (
                both(&format!(
                    "MemoryError: the program needed more than {} MiB",
                    self.limits.memory_bytes >> 20
                )),
                true,
                false,
            ),
            Termination::OutputLimit => (
                format!(
                    "{stdout}\nError: the program printed more than {} bytes",
                    self.limits.stdout_bytes
                ),
                true,
                false,
            ),
            Termination::Trap(why) => (
                both(&format!("Error: the program crashed ({why})")),
                true,
                false,
            ),
        }
    }
}

/// `text` cut to its first and last `max / 2` characters (an error's message is at the
/// end), saying how much was left out.
fn cut(text: &str, max: usize) -> String {
    let total = text.chars().count();
    if total <= max {
        return text.to_string();
    }
    let head: String = text.chars().take(max / 2).collect();
    let tail: String = text.chars().skip(total - (max - max / 2)).collect();
    format!(
        "{head}\n... ({} characters left out) ...\n{tail}",
        total - max
    )
}

impl<R: Reward> Environment for CodeInterpreter<R> {
    type Task = R::Task;
    type Session = PythonSession;

    fn name(&self) -> &str {
        "code-interpreter"
    }

    /// The prompt with the format's instructions ([`FENCED_INSTRUCTIONS`],
    /// [`TOOL_CALL_INSTRUCTIONS`]) as (or at the end of) its system message.
    fn opening(&self, prompt: &Prompt) -> Prompt {
        let instructions = match self.format {
            ToolFormat::ToolCall => TOOL_CALL_INSTRUCTIONS,
            _ => FENCED_INSTRUCTIONS,
        };
        let mut messages = prompt.messages();
        match messages.first_mut() {
            Some(first) if first.role == "system" => {
                first.content = format!("{}\n\n{instructions}", first.content)
            }
            _ => messages.insert(0, Message::system(instructions)),
        }
        Prompt::Chat(messages)
    }

    fn turn_ends(&self, turn: &str) -> bool {
        match self.format {
            ToolFormat::ToolCall => TOOL_CALL.is_match(turn),
            _ => program_in(turn).is_some(),
        }
    }

    fn start(&self, _task: &R::Task) -> PythonSession {
        PythonSession::default()
    }

    fn reply(
        &self,
        _task: &R::Task,
        session: &mut PythonSession,
        turn: &str,
        calls_left: usize,
    ) -> Reply {
        let Some(program) = self.called(turn) else {
            return Reply::End;
        };
        if calls_left == 0 {
            return Reply::OverBudget;
        }
        let t = Instant::now();
        let (output, error) = match program {
            Ok(program) => self.call(session, &program),
            Err(why) => (format!("Error: {why}"), true),
        };
        let output = output.trim_end_matches('\n');
        let (text, placement) = match self.format {
            ToolFormat::ToolCall => (output.to_string(), Placement::Message("tool".into())),
            _ => {
                let open = if turn.ends_with('\n') { "" } else { "\n" };
                (
                    format!("{open}```output\n{output}\n```\n"),
                    Placement::Inline,
                )
            }
        };
        Reply::Observe(Observation {
            text,
            placement,
            tool_call: Some(ToolCall {
                error,
                seconds: t.elapsed().as_secs_f64(),
            }),
        })
    }

    fn score(&self, task: &R::Task, _session: &PythonSession, transcript: &str) -> Score {
        self.reward.score(task, transcript)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_is_found_once_its_block_closes() {
        assert_eq!(program_in("Let me compute.\n```python\nprint(1+1)\n"), None);
        assert_eq!(
            program_in("Let me compute.\n```python\nprint(1+1)\n```"),
            Some("print(1+1)\n")
        );
        assert_eq!(program_in("```py\nx = 2\n```\nmore"), Some("x = 2\n"));
        assert_eq!(program_in("```\nnot python\n```"), None);
    }

    #[test]
    fn a_tool_call_names_python_and_carries_code() {
        let call = |json: &str| {
            tool_call_in(&format!(
                "Let me run it.\n<tool_call>\n{json}\n</tool_call>"
            ))
        };
        assert_eq!(tool_call_in("<tool_call>\n{\"name\": \"python\""), None);
        assert_eq!(
            call(r#"{"name": "python", "arguments": {"code": "print(1)"}}"#),
            Some(Ok("print(1)".into()))
        );
        assert_eq!(
            call(r#"{"name": "python", "arguments": "{\"code\": \"x = 2\"}"}"#),
            Some(Ok("x = 2".into()))
        );
        let err = |json: &str| call(json).unwrap().unwrap_err();
        assert!(err("{not json").contains("not JSON"));
        assert!(err(r#"{"name": "search", "arguments": {}}"#).contains("unknown tool \"search\""));
        assert!(err(r#"{"name": "python", "arguments": {"src": "1"}}"#).contains("no `code`"));
    }

    #[test]
    fn long_output_is_cut_and_says_so() {
        assert_eq!(cut("short", 10), "short");
        assert_eq!(
            cut("abcdefghij", 4),
            "ab\n... (6 characters left out) ...\nij"
        );
    }
}
