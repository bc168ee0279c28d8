//! Worker processes: the code verifier's way across cores.
//!
//! Threads of one process share its memory map, and every sandbox run changes that map
//! (copy-on-write faults, the reset's `madvise`, `mprotect`), which on Linux takes the
//! map's lock and interrupts the process's other cores to flush their TLBs. Measured on
//! 2 cores, two threads ran the sandbox about 1.1x as fast as one, two processes about
//! 2x. So batches go to worker processes: each owns a [`CodeVerifier`] (its own engine
//! and instance pool), reads one job per line on stdin (verify a response against tests,
//! or run a program with a stdin and limits) and writes one reply per line on stdout (a
//! [`Report`] or an [`Execution`]).
//!
//! A worker is any executable whose `main` calls [`serve_if_worker`] first: the `cove`
//! and `train-code` binaries do. [`WorkerCommand::current_exe`] re-runs the calling
//! binary; the worker's configuration travels in the [`WORKER_ENV`] variable.

use super::sandbox::{Execution, HOST_THREAD_STACK, Limits, mark_big_stack_thread};
use super::{CodeConfig, CodeError, CodeVerifier, Report, TestSuite};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Condvar, Mutex, PoisonError};

/// Environment variable that turns a process into a worker; it holds the worker's
/// [`CodeConfig`] as JSON.
pub const WORKER_ENV: &str = "COVE_SANDBOX_WORKER";

/// The line a worker writes once its sandbox is loaded.
const READY: &str = "ready";

/// How to start a worker process.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerCommand {
    /// The executable; its `main` must call [`serve_if_worker`] before anything else.
    pub program: PathBuf,
    /// Its arguments (ignored by a worker, but they must not make `main` exit first).
    pub args: Vec<OsString>,
    /// Variables set in the worker's environment on top of this process's (for
    /// example [`crate::runtime::RUNTIME_DIR_ENV`], so the worker loads the same runtime).
    pub env: Vec<(OsString, OsString)>,
}

impl WorkerCommand {
    /// The running executable, with no arguments.
    pub fn current_exe() -> Result<Self, CodeError> {
        let program = std::env::current_exe().map_err(|source| CodeError::Io {
            path: PathBuf::from("<current executable>"),
            source,
        })?;
        Ok(WorkerCommand {
            program,
            args: Vec::new(),
            env: Vec::new(),
        })
    }
}

/// A job as the pool sends it.
#[derive(serde::Serialize)]
#[serde(tag = "job", rename_all = "snake_case")]
enum Job<'a> {
    /// Score `response` against `tests` with the worker's configuration.
    Verify {
        response: &'a str,
        tests: &'a TestSuite,
    },
    /// Run `code` once with `stdin` under `limits`.
    Run {
        code: &'a str,
        stdin: &'a [u8],
        limits: &'a Limits,
    },
}

/// A job as the worker reads it.
#[derive(serde::Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
enum Received {
    Verify {
        response: String,
        tests: TestSuite,
    },
    Run {
        code: String,
        stdin: Vec<u8>,
        limits: Limits,
    },
}

/// If [`WORKER_ENV`] is set, serves jobs (verify, run) on stdin/stdout until stdin
/// closes and exits the process; otherwise returns at once. Call it first in `main`.
pub fn serve_if_worker() {
    let Some(config) = std::env::var_os(WORKER_ENV) else {
        return;
    };
    let outcome = config
        .into_string()
        .map_err(|_| format!("{WORKER_ENV} is not UTF-8"))
        .and_then(|json| {
            serde_json::from_str::<CodeConfig>(&json).map_err(|e| format!("{WORKER_ENV}: {e}"))
        })
        .and_then(|config| {
            // One execution at a time, on a thread whose stack holds a full wasm stack.
            std::thread::Builder::new()
                .name("cove-worker".into())
                .stack_size(HOST_THREAD_STACK)
                .spawn(move || serve(config))
                .map_err(|e| format!("cannot start the worker thread: {e}"))?
                .join()
                .map_err(|_| "the worker thread panicked".to_string())?
        });
    std::process::exit(match outcome {
        Ok(()) => 0,
        Err(msg) => {
            eprintln!("cove sandbox worker: {msg}");
            1
        }
    });
}

fn serve(mut config: CodeConfig) -> Result<(), String> {
    mark_big_stack_thread();
    config.threads = 1;
    let verifier = CodeVerifier::new(config).map_err(|e| e.to_string())?;
    let (stdin, stdout) = (std::io::stdin(), std::io::stdout());
    let mut out = stdout.lock();
    writeln!(out, "{READY}")
        .and_then(|()| out.flush())
        .map_err(|e| e.to_string())?;
    for line in stdin.lock().lines() {
        let line = line.map_err(|e| format!("reading a request: {e}"))?;
        let job: Received = serde_json::from_str(&line).map_err(|e| format!("bad job: {e}"))?;
        let reply = match job {
            Received::Verify { response, tests } => {
                serde_json::to_string(&verifier.verify(&response, &tests))
            }
            Received::Run {
                code,
                stdin,
                limits,
            } => serde_json::to_string(&verifier.sandbox().run(&code, &stdin, &limits)),
        }
        .map_err(|e| e.to_string())?;
        writeln!(out, "{reply}")
            .and_then(|()| out.flush())
            .map_err(|e| format!("writing a reply: {e}"))?;
    }
    Ok(())
}

/// One running worker.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    fn start(command: &WorkerCommand, config_json: &str) -> Result<Self, CodeError> {
        let failed =
            |what: String| CodeError::Worker(format!("{}: {what}", command.program.display()));
        let mut child = Command::new(&command.program)
            .args(&command.args)
            .envs(command.env.iter().map(|(k, v)| (k, v)))
            .env(WORKER_ENV, config_json)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| failed(format!("cannot start: {e}")))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(failed("no pipes".into()));
        };
        let mut worker = Worker {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        };
        let mut line = String::new();
        worker
            .stdout
            .read_line(&mut line)
            .map_err(|e| failed(format!("reading its ready line: {e}")))?;
        if line.trim_end() != READY {
            worker.stop();
            return Err(failed(
                "did not start as a sandbox worker (does its `main` call `serve_if_worker` first?)"
                    .into(),
            ));
        }
        Ok(worker)
    }

    fn ask<R: serde::de::DeserializeOwned>(&mut self, job: &Job) -> Result<R, String> {
        let json = serde_json::to_string(job).map_err(|e| e.to_string())?;
        writeln!(self.stdin, "{json}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("sending the job: {e}"))?;
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) => Err("the worker exited".into()),
            Ok(_) => serde_json::from_str(&line).map_err(|e| format!("bad reply: {e}")),
            Err(e) => Err(format!("reading the reply: {e}")),
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fixed set of worker processes; [`WorkerPool::verify`] borrows an idle one, so any
/// number of threads can use the pool at once (they wait when all are busy).
pub struct WorkerPool {
    command: WorkerCommand,
    config_json: String,
    state: Mutex<PoolState>,
    returned: Condvar,
}

/// The idle workers and how many are running (idle or busy).
struct PoolState {
    idle: Vec<Worker>,
    alive: usize,
}

impl WorkerPool {
    /// Starts `count` workers (at least one) with `config`, waiting until each has
    /// loaded its sandbox.
    pub fn start(
        command: WorkerCommand,
        config: &CodeConfig,
        count: usize,
    ) -> Result<Self, CodeError> {
        let config_json =
            serde_json::to_string(config).map_err(|e| CodeError::Worker(e.to_string()))?;
        let workers = std::thread::scope(|scope| {
            let starting: Vec<_> = (0..count.max(1))
                .map(|_| scope.spawn(|| Worker::start(&command, &config_json)))
                .collect();
            starting
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(CodeError::Worker("start-up panicked".into())))
                })
                .collect::<Result<Vec<_>, _>>()
        })?;
        Ok(WorkerPool {
            command,
            config_json,
            state: Mutex::new(PoolState {
                alive: workers.len(),
                idle: workers,
            }),
            returned: Condvar::new(),
        })
    }

    /// Verifies one response in a worker. A worker that fails (it should not: programs
    /// run in its sandbox) is replaced, and the response gets a `RuntimeError` verdict
    /// that says so.
    pub fn verify(&self, response: &str, tests: &TestSuite) -> Report {
        self.ask(&Job::Verify { response, tests })
            .unwrap_or_else(|msg| {
                Report::failed(tests.len(), format!("sandbox worker failed: {msg}"))
            })
    }

    /// Runs `code` once in a worker with `stdin` under `limits`. An error means the
    /// worker failed, not the program (whose failures are in the [`Execution`]); the
    /// worker is replaced.
    pub fn run(&self, code: &str, stdin: &[u8], limits: &Limits) -> Result<Execution, String> {
        self.ask(&Job::Run {
            code,
            stdin,
            limits,
        })
        .map_err(|msg| format!("sandbox worker failed: {msg}"))
    }

    /// The number of workers running (idle or busy).
    pub fn alive(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .alive
    }

    /// Sends `job` to an idle worker (waiting for one), replacing the worker when it
    /// fails.
    fn ask<R: serde::de::DeserializeOwned>(&self, job: &Job) -> Result<R, String> {
        let mut worker = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if let Some(w) = state.idle.pop() {
                    break w;
                }
                if state.alive == 0 {
                    return Err("no worker is running (restarts failed)".into());
                }
                state = self
                    .returned
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        let (reply, worker) = match worker.ask(job) {
            Ok(reply) => (Ok(reply), Some(worker)),
            Err(msg) => {
                worker.stop();
                let restarted = Worker::start(&self.command, &self.config_json);
                (Err(msg), restarted.ok())
            }
        };
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match worker {
            Some(w) => state.idle.push(w),
            None => state.alive -= 1,
        }
        drop(state);
        self.returned.notify_all();
        reply
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        for mut worker in state.idle.drain(..) {
            worker.stop();
        }
    }
}
