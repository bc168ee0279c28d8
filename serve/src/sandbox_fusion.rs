//! SandboxFusion's `POST /run_code` protocol: the request and response bodies, and how a
//! sandbox [`Execution`] becomes a response.
//!
//! The field names and status strings are SandboxFusion's, so that clients written for it
//! (verl's `sandbox_fusion` reward, among others) work unchanged. Only Python runs here;
//! other languages get a `Failed` response that says so. Cove's sandbox has no
//! filesystem, so `files` and `fetch_files` must be empty.

use cove_verifiers::code::{Execution, Limits, Termination};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The body of `POST /run_code`. Unknown fields are ignored, as SandboxFusion does.
#[derive(Debug, Clone, Deserialize)]
pub struct RunCodeRequest {
    /// The program's source.
    pub code: String,
    /// The language; only `python` (or `python3`) runs here.
    pub language: String,
    /// Standard input of the program.
    #[serde(default)]
    pub stdin: String,
    /// Wall-clock limit of the run, in seconds (SandboxFusion's default: 10).
    #[serde(default = "default_timeout_s")]
    pub run_timeout: f64,
    /// Compile-step limit; Python has no compile step, so it is accepted and unused.
    #[serde(default = "default_timeout_s")]
    pub compile_timeout: f64,
    /// Memory cap in MB; -1 (the default) means the server's largest cap.
    #[serde(default = "default_memory_mb", rename = "memory_limit_MB")]
    pub memory_limit_mb: i64,
    /// Files to place beside the program (name to base64 content); must be empty.
    #[serde(default)]
    pub files: BTreeMap<String, Option<String>>,
    /// Files to read back after the run; must be empty.
    #[serde(default)]
    pub fetch_files: Vec<String>,
}

fn default_timeout_s() -> f64 {
    10.0
}

fn default_memory_mb() -> i64 {
    -1
}

/// The top-level outcome, SandboxFusion's `RunStatus` of the whole request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// The program ran and exited with status 0.
    Success,
    /// The program ran and failed (non-zero exit, time limit, ...), or the request asks
    /// for something this server does not do (another language, files).
    Failed,
    /// The server could not run the program (a worker failed).
    SandboxError,
}

/// How the run itself ended, SandboxFusion's `CommandRunStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunStatus {
    /// The program ended by itself (any exit status).
    Finished,
    /// The wall-clock limit stopped it.
    TimeLimitExceeded,
    /// It could not be run.
    Error,
}

/// One command's result, SandboxFusion's `CommandRunResult`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// How it ended.
    pub status: RunStatus,
    /// Wall-clock seconds (instantiation included).
    pub execution_time: f64,
    /// Exit status; null when the program was stopped by a limit.
    pub return_code: Option<i32>,
    /// Standard output (lossy UTF-8).
    pub stdout: String,
    /// Standard error (lossy UTF-8).
    pub stderr: String,
}

/// The body answering `POST /run_code`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunCodeResponse {
    /// The request's outcome.
    pub status: Status,
    /// Empty on success; otherwise why.
    pub message: String,
    /// Always null: Python has no compile step.
    pub compile_result: Option<RunResult>,
    /// The run's result; null when nothing ran.
    pub run_result: Option<RunResult>,
    /// Null: there is no pod.
    pub executor_pod_name: Option<String>,
    /// Fetched files: always empty (see the module docs).
    pub files: BTreeMap<String, String>,
}

impl RunCodeResponse {
    /// A response for a request that ran nothing.
    pub fn without_run(status: Status, message: impl Into<String>) -> Self {
        RunCodeResponse {
            status,
            message: message.into(),
            compile_result: None,
            run_result: None,
            executor_pod_name: None,
            files: BTreeMap::new(),
        }
    }

    /// The response for a program that ran: `Success` exactly when it finished with
    /// status 0. Limits other than time end the run as CPython would end it (exit status
    /// 1), with the reason in `message`.
    pub fn from_execution(execution: &Execution) -> Self {
        let (status, return_code, message) = match &execution.termination {
            Termination::Exited(code) => (RunStatus::Finished, Some(*code), String::new()),
            Termination::SyntaxError => (
                RunStatus::Finished,
                Some(1),
                "the program does not compile (SyntaxError)".to_string(),
            ),
            Termination::TimeLimit => (
                RunStatus::TimeLimitExceeded,
                None,
                "the run exceeded run_timeout".to_string(),
            ),
            Termination::MemoryLimit => (
                RunStatus::Finished,
                Some(1),
                "the program exceeded the memory limit".to_string(),
            ),
            Termination::OutputLimit => (
                RunStatus::Finished,
                Some(1),
                "the program exceeded the output limit".to_string(),
            ),
            Termination::Trap(trap) => (
                RunStatus::Finished,
                Some(1),
                format!("the program crashed the interpreter: {trap}"),
            ),
        };
        let run = RunResult {
            status,
            execution_time: execution.elapsed.as_secs_f64(),
            return_code,
            stdout: String::from_utf8_lossy(&execution.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&execution.stderr).into_owned(),
        };
        let ok = status == RunStatus::Finished && return_code == Some(0);
        RunCodeResponse {
            status: if ok { Status::Success } else { Status::Failed },
            message,
            compile_result: None,
            run_result: Some(run),
            executor_pod_name: None,
            files: BTreeMap::new(),
        }
    }
}

/// The server's caps on what a request may ask for.
#[derive(Debug, Clone, PartialEq)]
pub struct Caps {
    /// The longest `run_timeout` honoured.
    pub max_run_timeout: Duration,
    /// The largest memory cap, also used for `memory_limit_MB: -1`.
    pub max_memory_mb: u64,
    /// Captured stdout and stderr caps.
    pub stdout_bytes: usize,
    /// See `stdout_bytes`.
    pub stderr_bytes: usize,
}

/// What a request is, once checked: a program to run under limits, or a response to give
/// without running anything.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Run `code` with `stdin` under `limits`.
    Run {
        /// Limits from the request, clamped to the caps.
        limits: Limits,
    },
    /// Answer at once with this `Failed` response.
    Refuse(RunCodeResponse),
}

/// Checks a request against what this server does and turns its limits into sandbox
/// [`Limits`]. Out-of-range numbers are a client error (`Err`, answered with 400).
pub fn plan(request: &RunCodeRequest, caps: &Caps) -> Result<Plan, String> {
    if !(request.run_timeout.is_finite() && request.run_timeout > 0.0) {
        return Err(format!(
            "run_timeout must be a positive number of seconds, got {}",
            request.run_timeout
        ));
    }
    if request.memory_limit_mb == 0 || request.memory_limit_mb < -1 {
        return Err(format!(
            "memory_limit_MB must be positive or -1 (the server's cap), got {}",
            request.memory_limit_mb
        ));
    }
    let language = request.language.to_ascii_lowercase();
    if language != "python" && language != "python3" {
        return Ok(Plan::Refuse(RunCodeResponse::without_run(
            Status::Failed,
            format!(
                "language {:?} is not supported: cove serve runs python only",
                request.language
            ),
        )));
    }
    if !request.files.is_empty() || !request.fetch_files.is_empty() {
        return Ok(Plan::Refuse(RunCodeResponse::without_run(
            Status::Failed,
            "files and fetch_files are not supported: Cove's sandbox has no filesystem",
        )));
    }
    let memory_mb = match u64::try_from(request.memory_limit_mb) {
        Ok(mb) => mb.min(caps.max_memory_mb),
        Err(_) => caps.max_memory_mb,
    };
    let time = Duration::from_secs_f64(request.run_timeout).min(caps.max_run_timeout);
    Ok(Plan::Run {
        limits: Limits {
            time,
            memory_bytes: usize::try_from(memory_mb << 20).unwrap_or(usize::MAX),
            stdout_bytes: caps.stdout_bytes,
            stderr_bytes: caps.stderr_bytes,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> Caps {
        Caps {
            max_run_timeout: Duration::from_secs(30),
            max_memory_mb: 1024,
            stdout_bytes: 1 << 20,
            stderr_bytes: 1 << 16,
        }
    }

    fn request(json: &str) -> RunCodeRequest {
        serde_json::from_str(json).unwrap()
    }

    fn execution(termination: Termination) -> Execution {
        Execution {
            termination,
            stdout: b"out\n".to_vec(),
            stderr: b"err\n".to_vec(),
            elapsed: Duration::from_millis(250),
        }
    }

    #[test]
    fn defaults_are_sandbox_fusions() {
        let r = request(r#"{"code": "print(1)", "language": "python"}"#);
        assert_eq!((r.run_timeout, r.compile_timeout), (10.0, 10.0));
        assert_eq!(r.memory_limit_mb, -1);
        assert!(r.stdin.is_empty() && r.files.is_empty() && r.fetch_files.is_empty());
        let Ok(Plan::Run { limits }) = plan(&r, &caps()) else {
            panic!("python runs")
        };
        assert_eq!(limits.time, Duration::from_secs(10));
        assert_eq!(limits.memory_bytes, 1024 << 20);
    }

    #[test]
    fn limits_are_clamped_to_the_caps() {
        let r = request(
            r#"{"code": "", "language": "python", "run_timeout": 99.5, "memory_limit_MB": 64}"#,
        );
        let Ok(Plan::Run { limits }) = plan(&r, &caps()) else {
            panic!("python runs")
        };
        assert_eq!(limits.time, Duration::from_secs(30));
        assert_eq!(limits.memory_bytes, 64 << 20);
        let r = request(r#"{"code": "", "language": "python", "run_timeout": 0.25}"#);
        let Ok(Plan::Run { limits }) = plan(&r, &caps()) else {
            panic!("python runs")
        };
        assert_eq!(limits.time, Duration::from_millis(250));
    }

    #[test]
    fn bad_numbers_are_client_errors() {
        for body in [
            r#"{"code": "", "language": "python", "run_timeout": -1}"#,
            r#"{"code": "", "language": "python", "run_timeout": 0}"#,
            r#"{"code": "", "language": "python", "memory_limit_MB": 0}"#,
            r#"{"code": "", "language": "python", "memory_limit_MB": -7}"#,
        ] {
            assert!(plan(&request(body), &caps()).is_err(), "{body}");
        }
    }

    #[test]
    fn other_languages_and_files_are_refused_with_a_message() {
        let Ok(Plan::Refuse(r)) = plan(&request(r#"{"code": "", "language": "cpp"}"#), &caps())
        else {
            panic!("cpp is refused")
        };
        assert_eq!(r.status, Status::Failed);
        assert!(r.message.contains("\"cpp\""), "{}", r.message);
        assert!(r.run_result.is_none());
        let body = r#"{"code": "", "language": "python", "files": {"a.txt": "aGk="}}"#;
        let Ok(Plan::Refuse(r)) = plan(&request(body), &caps()) else {
            panic!("files are refused")
        };
        assert!(r.message.contains("filesystem"), "{}", r.message);
    }

    #[test]
    fn executions_map_to_sandbox_fusion_statuses() {
        let ok = RunCodeResponse::from_execution(&execution(Termination::Exited(0)));
        assert_eq!(ok.status, Status::Success);
        let run = ok.run_result.unwrap();
        assert_eq!(
            (run.status, run.return_code),
            (RunStatus::Finished, Some(0))
        );
        assert_eq!(
            (run.stdout.as_str(), run.stderr.as_str()),
            ("out\n", "err\n")
        );
        assert_eq!(run.execution_time, 0.25);
        let failed = RunCodeResponse::from_execution(&execution(Termination::Exited(3)));
        assert_eq!(failed.status, Status::Failed);
        assert_eq!(failed.run_result.unwrap().return_code, Some(3));
        let slow = RunCodeResponse::from_execution(&execution(Termination::TimeLimit));
        assert_eq!(slow.status, Status::Failed);
        let run = slow.run_result.unwrap();
        assert_eq!(
            (run.status, run.return_code),
            (RunStatus::TimeLimitExceeded, None)
        );
        for t in [
            Termination::SyntaxError,
            Termination::MemoryLimit,
            Termination::OutputLimit,
            Termination::Trap("stack overflow".into()),
        ] {
            let r = RunCodeResponse::from_execution(&execution(t.clone()));
            assert_eq!(r.status, Status::Failed, "{t:?}");
            assert_eq!(r.run_result.unwrap().return_code, Some(1), "{t:?}");
            assert!(!r.message.is_empty(), "{t:?}");
        }
    }

    #[test]
    fn the_response_has_every_field_of_sandbox_fusion() {
        let json = serde_json::to_value(RunCodeResponse::from_execution(&execution(
            Termination::Exited(0),
        )))
        .unwrap();
        for key in [
            "status",
            "message",
            "compile_result",
            "run_result",
            "executor_pod_name",
            "files",
        ] {
            assert!(json.get(key).is_some(), "{key} missing from {json}");
        }
        for key in [
            "status",
            "execution_time",
            "return_code",
            "stdout",
            "stderr",
        ] {
            assert!(json["run_result"].get(key).is_some(), "run_result.{key}");
        }
        assert_eq!(json["status"], "Success");
        assert_eq!(json["run_result"]["status"], "Finished");
        assert!(json["compile_result"].is_null());
    }
}
