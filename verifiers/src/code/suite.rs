//! Test suites (the three formats), how a program is run against each case, and the
//! per-case verdicts.
//!
//! - `stdio` (APPS / TACO / CodeContests): the program reads the case's input on stdin;
//!   its stdout is compared line by line, whitespace-tolerant (tokens per line, trailing
//!   blank lines ignored), numbers within `float_tolerance` when it is set.
//! - `call` (APPS/TACO call-based, LeetCode): a harness calls `fn_name` (a top-level
//!   function, or a method of `Solution()`) with each case's argument list (stdin is
//!   empty) and compares
//!   the JSON of the result with the expected value (an expected `[x]` also accepts `x`,
//!   as the APPS checker does).
//! - `assert` (HumanEval, MBPP): the test code runs after the program; if it defines
//!   `check` and an `entry_point` is given, `check(entry_point)` is called. The harness
//!   (`run_assert` in `verifiers/guest/cove_guest.py`) is hardened against reward
//!   hacking: the program's functions must return plain data to the tests (exact
//!   builtin scalars and containers; `allow_objects` turns this off), what the program
//!   could patch to fool the tests (builtins, `math`, streams, `sys.modules`, import
//!   hooks) is restored before the tests and after each call, and introspection that
//!   would reach the harness (frames, `gc`, tracing, audit hooks) is refused; the
//!   token and the tests travel on stdin. Such attempts get [`Verdict::RewardHack`].
//!
//! Harnessed formats print a per-run random nonce after the checks, so a program that
//! exits early (`os._exit(0)`) cannot pass for one that ran them.

use super::sandbox::{Execution, Limits, Sandbox, Termination};
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// A problem's tests: one JSON object with a `kind` tag.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum TestSuite {
    /// Standard input / standard output cases.
    Stdio {
        /// One stdin per case.
        inputs: Vec<String>,
        /// The expected stdout of each case.
        outputs: Vec<String>,
        /// Absolute-or-relative tolerance for numeric tokens (none: exact tokens).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        float_tolerance: Option<f64>,
    },
    /// Function-call cases.
    Call {
        /// Function (or `Solution` method) to call.
        fn_name: String,
        /// One argument list per case.
        inputs: Vec<Vec<serde_json::Value>>,
        /// The expected return value of each case.
        outputs: Vec<serde_json::Value>,
        /// Tolerance for numbers in the result (none: exact).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        float_tolerance: Option<f64>,
    },
    /// Assertion-based tests run as one case.
    Assert {
        /// Test code: asserts, or a `check(candidate)` function.
        code: String,
        /// The function passed to `check`, when the test code defines one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        entry_point: Option<String>,
        /// Let the program's functions return objects other than plain data to the tests
        /// (off by default: a returned object could define `__eq__` to pass any assert;
        /// see [`Verdict::RewardHack`]).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        allow_objects: bool,
    },
}

/// Why a test suite cannot be run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SuiteError {
    /// `inputs` and `outputs` differ in length.
    #[error("tests.inputs has {inputs} cases but tests.outputs has {outputs}")]
    LengthMismatch {
        /// Number of inputs.
        inputs: usize,
        /// Number of outputs.
        outputs: usize,
    },
    /// The suite has no case.
    #[error("tests has no case")]
    Empty,
    /// `fn_name` is not a Python identifier.
    #[error("tests.fn_name {0:?} is not a Python identifier")]
    BadName(String),
}

impl TestSuite {
    /// Number of cases (an `assert` suite is one case).
    pub fn len(&self) -> usize {
        match self {
            TestSuite::Stdio { inputs, .. } => inputs.len(),
            TestSuite::Call { inputs, .. } => inputs.len(),
            TestSuite::Assert { .. } => 1,
        }
    }

    /// Whether the suite has no case.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks the suite's shape before anything runs.
    pub fn validate(&self) -> Result<(), SuiteError> {
        let is_ident = |s: &str| {
            let mut chars = s.chars();
            chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
                && chars.all(|c| c == '_' || c.is_alphanumeric())
        };
        match self {
            TestSuite::Stdio {
                inputs, outputs, ..
            } if inputs.len() != outputs.len() => Err(SuiteError::LengthMismatch {
                inputs: inputs.len(),
                outputs: outputs.len(),
            }),
            TestSuite::Call {
                inputs, outputs, ..
            } if inputs.len() != outputs.len() => Err(SuiteError::LengthMismatch {
                inputs: inputs.len(),
                outputs: outputs.len(),
            }),
            TestSuite::Call { fn_name, .. } if !is_ident(fn_name) => {
                Err(SuiteError::BadName(fn_name.clone()))
            }
            TestSuite::Assert {
                entry_point: Some(e),
                ..
            } if !is_ident(e) => Err(SuiteError::BadName(e.clone())),
            _ if self.is_empty() => Err(SuiteError::Empty),
            _ => Ok(()),
        }
    }
}

/// The verdict of one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Verdict {
    /// Correct output.
    Accepted,
    /// Ran to the end with a wrong output (or a failed assertion).
    WrongAnswer,
    /// Raised an exception, exited non-zero or trapped.
    RuntimeError,
    /// Passed the wall-clock deadline.
    TimeLimit,
    /// Hit the memory cap.
    MemoryLimit,
    /// Wrote more than the stdout cap.
    OutputLimit,
    /// Passed, or tried to pass, without solving: returned an object that is not plain
    /// data to `assert` tests (its `__eq__` could accept anything), or reached for the
    /// test harness (frames, `gc`, tracing, audit hooks).
    RewardHack,
    /// Does not compile.
    SyntaxError,
}

/// One case's verdict with a short explanation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CaseVerdict {
    /// What happened.
    pub verdict: Verdict,
    /// First differing line, stderr tail, ... (empty when accepted).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl CaseVerdict {
    fn accepted() -> Self {
        Self {
            verdict: Verdict::Accepted,
            detail: String::new(),
        }
    }

    fn new(verdict: Verdict, detail: impl Into<String>) -> Self {
        Self {
            verdict,
            detail: detail.into(),
        }
    }
}

/// Last `max` characters of `bytes` as text (the useful end of a traceback).
fn tail(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end();
    let count = text.chars().count();
    if count <= max {
        return text.to_string();
    }
    let skip = count - max;
    format!("...{}", text.chars().skip(skip).collect::<String>())
}

/// Shortens a value for a detail message.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(max).collect::<String>())
    }
}

/// Maps a failed execution to its verdict; `None` for a clean exit.
fn failure_verdict(exec: &Execution, limits: &Limits) -> Option<CaseVerdict> {
    let v = match &exec.termination {
        Termination::Exited(0) => return None,
        Termination::Exited(code) => CaseVerdict::new(
            Verdict::RuntimeError,
            format!("exit status {code}: {}", tail(&exec.stderr, 400)),
        ),
        Termination::SyntaxError => CaseVerdict::new(Verdict::SyntaxError, tail(&exec.stderr, 400)),
        Termination::TimeLimit => CaseVerdict::new(
            Verdict::TimeLimit,
            format!("exceeded {:.1} s", limits.time.as_secs_f64()),
        ),
        Termination::MemoryLimit => CaseVerdict::new(
            Verdict::MemoryLimit,
            format!("exceeded {} MiB", limits.memory_bytes >> 20),
        ),
        Termination::OutputLimit => CaseVerdict::new(
            Verdict::OutputLimit,
            format!("stdout exceeded {} bytes", limits.stdout_bytes),
        ),
        Termination::Trap(msg) => CaseVerdict::new(
            Verdict::RuntimeError,
            format!("{msg}: {}", tail(&exec.stderr, 300)),
        ),
    };
    Some(v)
}

/// Tokens equal, or both numbers within `tol` (absolute, or relative to the expected).
fn tokens_match(got: &str, want: &str, tol: Option<f64>) -> bool {
    if got == want {
        return true;
    }
    match (tol, got.parse::<f64>(), want.parse::<f64>()) {
        (Some(tol), Ok(g), Ok(w)) => (g - w).abs() <= tol * w.abs().max(1.0),
        _ => false,
    }
}

/// Compares stdout with the expected output; `Err(detail)` names the first differing line.
pub fn compare_stdout(got: &str, want: &str, tol: Option<f64>) -> Result<(), String> {
    let lines = |s: &str| {
        let mut v: Vec<Vec<String>> = s
            .lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect();
        while v.last().is_some_and(|l: &Vec<String>| l.is_empty()) {
            v.pop();
        }
        v
    };
    let (got_lines, want_lines) = (lines(got), lines(want));
    for i in 0..got_lines.len().max(want_lines.len()) {
        let g = got_lines.get(i);
        let w = want_lines.get(i);
        let same = match (g, w) {
            (Some(g), Some(w)) => {
                g.len() == w.len() && g.iter().zip(w).all(|(a, b)| tokens_match(a, b, tol))
            }
            _ => false,
        };
        if !same {
            let show = |l: Option<&Vec<String>>| {
                l.map_or("<end of output>".to_string(), |l| clip(&l.join(" "), 80))
            };
            return Err(format!(
                "line {}: expected `{}`, got `{}`",
                i + 1,
                show(w),
                show(g)
            ));
        }
    }
    Ok(())
}

/// JSON equality with numbers compared as f64 (within `tol` when set).
fn json_match(got: &serde_json::Value, want: &serde_json::Value, tol: Option<f64>) -> bool {
    use serde_json::Value;
    match (got, want) {
        (Value::Number(g), Value::Number(w)) => match (g.as_f64(), w.as_f64(), tol) {
            _ if g == w => true,
            (Some(g), Some(w), Some(tol)) => (g - w).abs() <= tol * w.abs().max(1.0),
            (Some(g), Some(w), None) => g == w,
            _ => false,
        },
        (Value::Array(g), Value::Array(w)) => {
            g.len() == w.len() && g.iter().zip(w).all(|(a, b)| json_match(a, b, tol))
        }
        (Value::Object(g), Value::Object(w)) => {
            g.len() == w.len()
                && g.iter()
                    .all(|(k, v)| w.get(k).is_some_and(|wv| json_match(v, wv, tol)))
        }
        _ => got == want,
    }
}

/// A random token the program under test cannot predict.
fn nonce() -> String {
    let mut a = RandomState::new().build_hasher();
    a.write_u64(std::process::id() as u64);
    let mut b = RandomState::new().build_hasher();
    b.write_u64(a.finish());
    format!("{:016x}{:016x}", a.finish(), b.finish())
}

/// Python string literal holding `s` (a JSON string is a valid Python literal).
fn py_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serialises")
}

/// The common head of harnessed programs: compiles the solution as `solution.py`, runs it
/// as `__main__` in `__cove_ns`, reporting a syntax error with `marker`.
fn harness_head(program: &str, marker: &str) -> String {
    format!(
        r#"import sys as __cove_sys, json as __cove_json, traceback as __cove_tb, linecache as __cove_lc
def __cove_register(name, src):
    __cove_lc.cache[name] = (len(src), None, src.splitlines(True), name)
__cove_register("solution.py", {program})
__cove_ns = {{"__name__": "__main__", "__builtins__": __builtins__}}
try:
    __cove_code = compile({program}, "solution.py", "exec")
except (SyntaxError, ValueError) as __cove_err:
    __cove_tb.print_exception(__cove_err, limit=0)
    print({marker}, file=__cove_sys.stderr)
    __cove_sys.exit(1)
exec(__cove_code, __cove_ns)
"#,
        program = py_str(program),
        marker = py_str(marker),
    )
}

fn call_harness(program: &str, fn_name: &str, args: &str, nonce: &str) -> String {
    let mut src = harness_head(program, &format!("__cove_syntax_{nonce}"));
    src.push_str(&format!(
        r#"__cove_name = {name}
if __cove_name in __cove_ns and callable(__cove_ns[__cove_name]):
    __cove_fn = __cove_ns[__cove_name]
elif "Solution" in __cove_ns and hasattr(__cove_ns["Solution"], __cove_name):
    __cove_fn = getattr(__cove_ns["Solution"](), __cove_name)
else:
    raise NameError("no function or Solution method named " + __cove_name)
__cove_args = __cove_json.loads({args})
__cove_out = __cove_fn(*__cove_args)
def __cove_plain(v):
    if isinstance(v, (set, frozenset)):
        return sorted(v, key=repr)
    if isinstance(v, dict):
        return {{str(k): x for k, x in v.items()}}
    return repr(v)
__cove_sys.stdout.write("\n" + {nonce} + __cove_json.dumps(__cove_out, default=__cove_plain) + "\n")
__cove_sys.stdout.flush()
"#,
        name = py_str(fn_name),
        args = py_str(args),
        nonce = py_str(nonce),
    ));
    src
}

/// The `assert` harness: a call into the guest driver's hardened `run_assert` (see
/// `verifiers/guest/cove_guest.py`). The token and the test code travel on stdin, so the
/// harness source holds neither.
fn assert_harness(program: &str, entry_point: Option<&str>, plain_returns: bool) -> String {
    format!(
        "import sys\n(sys.modules.get(\"cove_guest\") or sys.modules[\"__main__\"]).run_assert({}, {}, {})\n",
        py_str(program),
        entry_point.map_or("None".to_string(), py_str),
        if plain_returns { "True" } else { "False" },
    )
}

/// The verdict of an `assert` run from the harness's marked record on stderr, its
/// exit and its stdout.
fn assert_verdict(exec: &Execution, limits: &Limits, token: &str) -> CaseVerdict {
    let stderr = String::from_utf8_lossy(&exec.stderr);
    let detail_marker = format!("__cove_detail_{token}\n");
    for (kind, verdict) in [
        ("hack", Verdict::RewardHack),
        ("syntax", Verdict::SyntaxError),
        ("wrong", Verdict::WrongAnswer),
        ("error", Verdict::RuntimeError),
    ] {
        let marker = format!("\n__cove_{kind}_{token}");
        if let Some((before, _)) = stderr.split_once(&marker) {
            let detail = before
                .rsplit_once(&detail_marker)
                .map_or(before, |(_, d)| d);
            return CaseVerdict::new(verdict, tail(detail.as_bytes(), 400));
        }
    }
    if let Some(v) = failure_verdict(exec, limits) {
        return v;
    }
    if String::from_utf8_lossy(&exec.stdout).contains(&format!("\n{token}\n")) {
        CaseVerdict::accepted()
    } else {
        CaseVerdict::new(
            Verdict::WrongAnswer,
            "the program exited before the tests finished",
        )
    }
}

/// Syntax errors inside a harness are reported through a marker line on stderr.
fn harness_failure(exec: &Execution, limits: &Limits, nonce: &str) -> Option<CaseVerdict> {
    let stderr = String::from_utf8_lossy(&exec.stderr);
    let marker = format!("__cove_syntax_{nonce}");
    if stderr.contains(&marker) {
        let text = stderr.replace(&marker, "");
        return Some(CaseVerdict::new(
            Verdict::SyntaxError,
            tail(text.as_bytes(), 400),
        ));
    }
    failure_verdict(exec, limits)
}

/// Runs `program` against every case of `suite` (stopping after the first failure when
/// `stop_at_first_failure`); returns one verdict per case that ran.
pub fn run_suite(
    sandbox: &Sandbox,
    program: &str,
    suite: &TestSuite,
    limits: &Limits,
    stop_at_first_failure: bool,
) -> Vec<CaseVerdict> {
    let mut verdicts = Vec::with_capacity(suite.len());
    for case in 0..suite.len() {
        let v = run_case(sandbox, program, suite, case, limits);
        let failed = v.verdict != Verdict::Accepted;
        verdicts.push(v);
        // A syntax error fails every case the same way.
        if failed
            && (stop_at_first_failure
                || verdicts
                    .last()
                    .is_some_and(|v| v.verdict == Verdict::SyntaxError))
        {
            break;
        }
    }
    verdicts
}

fn run_case(
    sandbox: &Sandbox,
    program: &str,
    suite: &TestSuite,
    case: usize,
    limits: &Limits,
) -> CaseVerdict {
    match suite {
        TestSuite::Stdio {
            inputs,
            outputs,
            float_tolerance,
        } => {
            let exec = sandbox.run(program, inputs[case].as_bytes(), limits);
            if let Some(v) = failure_verdict(&exec, limits) {
                return v;
            }
            match compare_stdout(
                &String::from_utf8_lossy(&exec.stdout),
                &outputs[case],
                *float_tolerance,
            ) {
                Ok(()) => CaseVerdict::accepted(),
                Err(detail) => CaseVerdict::new(Verdict::WrongAnswer, detail),
            }
        }
        TestSuite::Call {
            fn_name,
            inputs,
            outputs,
            float_tolerance,
        } => {
            let nonce = nonce();
            let args = serde_json::to_string(&inputs[case]).expect("JSON values always serialise");
            let exec = sandbox.run(&call_harness(program, fn_name, &args, &nonce), b"", limits);
            if let Some(v) = harness_failure(&exec, limits, &nonce) {
                return v;
            }
            let stdout = String::from_utf8_lossy(&exec.stdout);
            let Some(result) = stdout
                .rsplit_once(&nonce)
                .map(|(_, r)| r.lines().next().unwrap_or(""))
            else {
                return CaseVerdict::new(
                    Verdict::WrongAnswer,
                    "the program exited before returning a result",
                );
            };
            let want = &outputs[case];
            let got: serde_json::Value = match serde_json::from_str(result) {
                Ok(v) => v,
                Err(_) => {
                    return CaseVerdict::new(
                        Verdict::WrongAnswer,
                        format!("unreadable result `{}`", clip(result, 80)),
                    );
                }
            };
            let wrapped = matches!(want, serde_json::Value::Array(a) if a.len() == 1 && json_match(&got, &a[0], *float_tolerance));
            if json_match(&got, want, *float_tolerance) || wrapped {
                CaseVerdict::accepted()
            } else {
                CaseVerdict::new(
                    Verdict::WrongAnswer,
                    format!(
                        "case {}: expected `{}`, got `{}`",
                        case + 1,
                        clip(&want.to_string(), 80),
                        clip(&got.to_string(), 80)
                    ),
                )
            }
        }
        TestSuite::Assert {
            code,
            entry_point,
            allow_objects,
        } => {
            let token = nonce();
            let stdin = format!("{token}\n{code}");
            let exec = sandbox.run(
                &assert_harness(program, entry_point.as_deref(), !allow_objects),
                stdin.as_bytes(),
                limits,
            );
            assert_verdict(&exec, limits, &token)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stdout_comparison_tolerates_whitespace() {
        assert!(compare_stdout("1  2\n3\n\n\n", "1 2\n3", None).is_ok());
        assert!(compare_stdout("1 2\r\n3 \n", "1 2\n3\n", None).is_ok());
        let err = compare_stdout("1 2\n4\n", "1 2\n3\n", None).unwrap_err();
        assert_eq!(err, "line 2: expected `3`, got `4`");
        let err = compare_stdout("1\n", "1\n2\n", None).unwrap_err();
        assert!(
            err.contains("line 2") && err.contains("<end of output>"),
            "{err}"
        );
    }

    #[test]
    fn float_tolerance_is_optional() {
        assert!(compare_stdout("0.3333333", "0.333333333", None).is_err());
        assert!(compare_stdout("0.3333333", "0.333333333", Some(1e-6)).is_ok());
        assert!(compare_stdout("1000000.5", "1000000.0", Some(1e-6)).is_ok());
        assert!(compare_stdout("0.34", "0.333333333", Some(1e-6)).is_err());
    }

    #[test]
    fn json_results_compare_numbers_by_value() {
        assert!(json_match(&json!([1, 2.0]), &json!([1.0, 2]), None));
        assert!(!json_match(&json!([1, 2]), &json!([2, 1]), None));
        assert!(json_match(
            &json!({"a": 0.1000001}),
            &json!({"a": 0.1}),
            Some(1e-5)
        ));
    }

    #[test]
    fn suites_are_validated() {
        let s: TestSuite =
            serde_json::from_value(json!({"kind": "stdio", "inputs": ["1"], "outputs": []}))
                .unwrap();
        assert_eq!(
            s.validate(),
            Err(SuiteError::LengthMismatch {
                inputs: 1,
                outputs: 0
            })
        );
        let s: TestSuite = serde_json::from_value(
            json!({"kind": "call", "fn_name": "a b", "inputs": [[1]], "outputs": [1]}),
        )
        .unwrap();
        assert!(matches!(s.validate(), Err(SuiteError::BadName(_))));
        let s: TestSuite =
            serde_json::from_value(json!({"kind": "stdio", "inputs": [], "outputs": []})).unwrap();
        assert_eq!(s.validate(), Err(SuiteError::Empty));
        assert!(serde_json::from_value::<TestSuite>(json!({"kind": "bogus"})).is_err());
    }
}
