//! The code verifier: model-written Python runs in an embedded wasmtime sandbox and is
//! scored against a test suite.
//!
//! - [`sandbox`]: engine, runtimes (pre-initialised CPython component, CPython 3.12
//!   preview1 fallback), compiled-code cache, one fresh instance per execution, limits.
//! - [`suite`]: the three test formats (`stdio`, `call`, `assert`) and per-case verdicts.
//! - [`extract`]: the program out of a markdown response.
//! - [`jsonl`]: the `cove verify code --input FILE.jsonl` batch front end.
//!
//! [`CodeVerifier`] ties them together, scores one response or a batch across cores, and
//! implements [`Reward`] with the test suite as the task.

pub mod extract;
pub mod jsonl;
pub mod sandbox;
pub mod suite;
pub mod worker;

pub use extract::{Extract, extract_program};
pub use sandbox::{Execution, Limits, RuntimeKind, Sandbox, Termination};
pub use suite::{CaseVerdict, SuiteError, TestSuite, Verdict};
pub use worker::{WorkerCommand, WorkerPool, serve_if_worker};

use crate::reward::{Reward, Score};
use rayon::prelude::*;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything that can go wrong outside the program under test.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    /// A pinned runtime file is missing or corrupt.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    /// The set-up-built component is missing.
    #[error(
        "sandbox component {0} is missing; run `scripts/setup.sh` to build it from verifiers/guest/"
    )]
    ComponentMissing(PathBuf),
    /// The component's bytes do not match the hash written when it was built.
    #[error(
        "sandbox component {path} does not match its build-time SHA-256 (expected {expected}, got {actual}); \
         delete it and run `scripts/setup.sh` to rebuild it"
    )]
    ComponentHash {
        /// The component file.
        path: PathBuf,
        /// Hash recorded at build time.
        expected: String,
        /// Hash of the bytes on disk.
        actual: String,
    },
    /// Wasmtime refused to compile, link or configure.
    #[error("wasmtime: {0}")]
    Engine(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The batch thread pool could not start.
    #[error("cannot start the verifier's thread pool: {0}")]
    ThreadPool(String),
    /// A sandbox worker process could not start.
    #[error("sandbox worker {0}")]
    Worker(String),
}

/// How a response's case verdicts become its score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scoring {
    /// 1 when every case passes, else 0.
    #[default]
    AllOrNothing,
    /// The fraction of cases that pass.
    PassFraction,
}

/// The verifier's settings.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CodeConfig {
    /// Which Python runtime runs programs.
    pub runtime: RuntimeKind,
    /// Per-execution limits (each case is one execution).
    pub limits: Limits,
    /// How verdicts become a score.
    pub scoring: Scoring,
    /// Stop a suite at its first failing case (the rest count as not passed).
    pub stop_at_first_failure: bool,
    /// How the program is found in a response.
    pub extract: Extract,
    /// Threads for [`CodeVerifier::verify_batch`], and worker processes when the
    /// verifier has them (0: one per core).
    pub threads: usize,
}

/// The outcome of verifying one response.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// The reward: see [`Scoring`].
    pub score: f64,
    /// Cases accepted.
    pub passed: usize,
    /// Cases in the suite.
    pub total: usize,
    /// One verdict per case that ran (fewer than `total` after an early stop).
    pub verdicts: Vec<CaseVerdict>,
}

impl Report {
    /// Score 0 with one `RuntimeError` verdict saying `detail`: a response that could
    /// not be run at all (invalid tests, a failed worker).
    pub fn failed(total: usize, detail: String) -> Self {
        Report {
            score: 0.0,
            passed: 0,
            total,
            verdicts: vec![CaseVerdict {
                verdict: Verdict::RuntimeError,
                detail,
            }],
        }
    }

    /// Whether every case passed.
    pub fn all_passed(&self) -> bool {
        self.total > 0 && self.passed == self.total
    }
}

/// Scores Python responses against test suites in the sandbox. Share it across threads.
///
/// Runs programs in this process ([`CodeVerifier::new`]) or in worker processes
/// ([`CodeVerifier::with_worker_processes`]), which is what scales across cores.
pub struct CodeVerifier {
    sandbox: Arc<Sandbox>,
    config: CodeConfig,
    pool: rayon::ThreadPool,
    workers: Option<WorkerPool>,
}

impl CodeVerifier {
    /// Loads the configured runtime (see [`Sandbox::new`]) and starts the batch pool.
    pub fn new(config: CodeConfig) -> Result<Self, CodeError> {
        let sandbox = Arc::new(Sandbox::new(config.runtime)?);
        Self::with_sandbox(sandbox, config)
    }

    /// Uses an already loaded sandbox (its runtime overrides `config.runtime`).
    pub fn with_sandbox(sandbox: Arc<Sandbox>, mut config: CodeConfig) -> Result<Self, CodeError> {
        config.runtime = sandbox.kind();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads)
            .stack_size(sandbox::HOST_THREAD_STACK)
            .thread_name(|i| format!("cove-code-{i}"))
            .start_handler(|_| sandbox::mark_big_stack_thread())
            .build()
            .map_err(|e| CodeError::ThreadPool(e.to_string()))?;
        Ok(Self {
            sandbox,
            config,
            pool,
            workers: None,
        })
    }

    /// Like [`CodeVerifier::new`], with `config.threads` worker processes (0: one per
    /// core) started from `command` running every program; see [`worker`].
    pub fn with_worker_processes(
        config: CodeConfig,
        command: WorkerCommand,
    ) -> Result<Self, CodeError> {
        Self::new(config)?.into_worker_processes(command)
    }

    /// This verifier, with one worker process per batch thread started from `command`
    /// running every program from now on (for a verifier made by
    /// [`CodeVerifier::with_sandbox`]: the workers load the same runtime kind, from the
    /// folders `command`'s environment names).
    pub fn into_worker_processes(mut self, command: WorkerCommand) -> Result<Self, CodeError> {
        // One worker per batch thread, so a batch keeps every worker busy.
        let count = self.pool.current_num_threads();
        self.workers = Some(WorkerPool::start(command, &self.config, count)?);
        Ok(self)
    }

    /// The settings in use.
    pub fn config(&self) -> &CodeConfig {
        &self.config
    }

    /// The sandbox (to run programs directly).
    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }

    /// Extracts the program from `response` and runs it against `tests` (in a worker
    /// process when the verifier has them).
    pub fn verify(&self, response: &str, tests: &TestSuite) -> Report {
        match &self.workers {
            Some(workers) => workers.verify(response, tests),
            None => self.verify_here(response, tests),
        }
    }

    /// Runs `code` once with `stdin` under `limits` (in a worker process when the
    /// verifier has them): the code-interpreter tool's calls. An error means a worker
    /// failed, not the program (whose failures are in the [`Execution`]).
    pub fn run(&self, code: &str, stdin: &[u8], limits: &Limits) -> Result<Execution, String> {
        match &self.workers {
            Some(workers) => workers.run(code, stdin, limits),
            None => Ok(self.sandbox.run(code, stdin, limits)),
        }
    }

    /// [`CodeVerifier::verify`] in this process.
    fn verify_here(&self, response: &str, tests: &TestSuite) -> Report {
        let total = tests.len();
        if let Err(err) = tests.validate() {
            return Report::failed(total, format!("invalid tests: {err}"));
        }
        let program = extract_program(response, self.config.extract);
        let verdicts = suite::run_suite(
            &self.sandbox,
            &program,
            tests,
            &self.config.limits,
            self.config.stop_at_first_failure,
        );
        let passed = verdicts
            .iter()
            .filter(|v| v.verdict == Verdict::Accepted)
            .count();
        let score = match self.config.scoring {
            Scoring::AllOrNothing => f64::from(u8::from(passed == total)),
            Scoring::PassFraction => passed as f64 / total as f64,
        };
        Report {
            score,
            passed,
            total,
            verdicts,
        }
    }

    /// Verifies many `(response, tests)` pairs across the pool's threads (each handing
    /// its items to a worker process when the verifier has them); results are in input
    /// order.
    pub fn verify_batch(&self, items: &[(&str, &TestSuite)]) -> Vec<Report> {
        self.pool.install(|| {
            items
                .par_iter()
                .map(|(response, tests)| self.verify(response, tests))
                .collect()
        })
    }
}

impl Reward for CodeVerifier {
    type Task = TestSuite;

    fn name(&self) -> &str {
        "code"
    }

    fn score(&self, task: &TestSuite, response: &str) -> Score {
        let report = self.verify(response, task);
        let first_failure = report
            .verdicts
            .iter()
            .find(|v| v.verdict != Verdict::Accepted);
        let details = match first_failure {
            None => format!("{}/{} passed", report.passed, report.total),
            Some(v) => format!(
                "{}/{} passed; first failure {:?}: {}",
                report.passed, report.total, v.verdict, v.detail
            ),
        };
        Score {
            reward: report.score,
            correct: report.all_passed(),
            details,
        }
    }
}
