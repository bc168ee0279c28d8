//! The Python tool: tool-integrated reasoning in the code verifier's sandbox.
//!
//! The policy calls the tool by writing a fenced program (```` ```python ... ``` ````, the
//! format of ReTool and SimpleTIR); the turn stops at the block's closing fence, the
//! program runs in the embedded sandbox under the code verifier's per-call limits (time,
//! memory, output), and its output comes back inline as a fenced `output` block, after
//! which the policy continues its message. A turn without a program is the final answer,
//! scored by the wrapped [`Reward`] over the whole transcript.
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
//! `max_output_chars`. A limit or a sandbox failure becomes an error message in the
//! output block, never a failed run.

use super::{Environment, Observation, Placement, Reply, ToolCall};
use crate::data::Prompt;
use crate::model::Message;
use cove_verifiers::code::{CodeVerifier, Execution, Limits, Termination};
use cove_verifiers::{Reward, Score};
use regex::Regex;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

/// The system prompt that tells the policy how to call the tool.
pub const INSTRUCTIONS: &str = "You can run Python code. To run a program, write it in a \
```python block; its output comes back in an ```output block, and the variables you \
define stay available to later programs. When you know the answer, write it as \
\\boxed{ANSWER}.";

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

/// The first complete fenced Python program in `text`, if any.
pub fn program_in(text: &str) -> Option<&str> {
    PROGRAM
        .captures(text)
        .and_then(|c| c.get(1))
        .map(|m| m.as_str())
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

    /// The prompt with [`INSTRUCTIONS`] as (or at the end of) its system message.
    fn opening(&self, prompt: &Prompt) -> Prompt {
        let mut messages = prompt.messages();
        match messages.first_mut() {
            Some(first) if first.role == "system" => {
                first.content = format!("{}\n\n{INSTRUCTIONS}", first.content)
            }
            _ => messages.insert(0, Message::system(INSTRUCTIONS)),
        }
        Prompt::Chat(messages)
    }

    fn turn_ends(&self, turn: &str) -> bool {
        program_in(turn).is_some()
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
        let Some(program) = program_in(turn) else {
            return Reply::End;
        };
        if calls_left == 0 {
            return Reply::OverBudget;
        }
        let t = Instant::now();
        let (output, error) = self.call(session, program);
        let open = if turn.ends_with('\n') { "" } else { "\n" };
        let output = output.trim_end_matches('\n');
        Reply::Observe(Observation {
            text: format!("{open}```output\n{output}\n```\n"),
            placement: Placement::Inline,
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
    fn long_output_is_cut_and_says_so() {
        assert_eq!(cut("short", 10), "short");
        assert_eq!(
            cut("abcdefghij", 4),
            "ab\n... (6 characters left out) ...\nij"
        );
    }
}
