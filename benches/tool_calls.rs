//! The Python tool's calls three ways: inside the rollout (the code verifier's sandbox in
//! its worker processes, as `train-math` with `env.kind = "code-interpreter"` runs them),
//! through `cove serve`'s SandboxFusion endpoint over HTTP (one request per call, as the
//! peers call a sandbox service), and as `python3 -c` subprocesses (no sandbox at all: the
//! floor of starting an interpreter per call).
//!
//! Every backend runs the same driver program with the same stdin (the session's earlier
//! programs replayed, then the new one; `cove::env::code_interpreter`), so the calls are
//! the same calls. Two measurements per backend:
//!
//! - **latency**: `--calls` calls one after another (the third call of a three-call
//!   session, so two programs are replayed): p50, p99 and mean in milliseconds;
//! - **episodes**: SmolLM2-135M-Instruct (installed by `scripts/setup.sh`) samples
//!   `--prompts` × `--samples` episodes on the multi-turn engine, every turn forced to end
//!   after `--turn-chars` characters and answered by the next of three tool calls (three
//!   per episode): episodes per second, with a `no tool` row whose observation is a fixed
//!   text, so the model's own time is in the table too.
//!
//! ```text
//! cargo bench --profile dev --bench tool_calls
//! cargo bench --profile dev --bench tool_calls -- --calls 400 --prompts 8 --samples 4
//! ```
//! Prints a Markdown table.

use cove::env::code_interpreter::{PythonSession, ToolRunner};
use cove::env::{CodeInterpreter, Environment, Observation, Placement, Reply, ToolCall};
use cove::model::named::{DEFAULT_MODEL, ModelSource, resolve};
use cove::model::{Dtype, Message, Policy};
use cove::rollout::{
    EpisodeLimits, MultiTurnEngine, RolloutEngine, RolloutRequest, SamplingConfig,
};
use cove::verifiers::code::{
    CodeConfig, CodeVerifier, Execution, Limits, Termination, WorkerCommand, serve_if_worker,
};
use cove::verifiers::{Reward, Score};
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The three programs of every session: typical tool-integrated-reasoning calls.
const PROGRAMS: [&str; 3] = [
    "import math\nrows = [math.comb(20, k) for k in range(21)]\nprint(len(rows))",
    "total = sum(rows)\nprint(total, total == 2 ** 20)",
    "best = max(range(21), key=lambda k: rows[k])\nprint(best, rows[best])",
];

/// Options from the command line (`--calls N --prompts N --samples N --turn-chars N`).
struct Options {
    calls: usize,
    prompts: usize,
    samples: usize,
    turn_chars: usize,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| v.parse().expect("a number"))
    };
    Options {
        calls: get("--calls", 200),
        prompts: get("--prompts", 8),
        samples: get("--samples", 4),
        turn_chars: get("--turn-chars", 24),
    }
}

/// No task reward: the benchmark times the calls.
struct Unscored;

impl Reward for Unscored {
    type Task = ();
    fn name(&self) -> &str {
        "unscored"
    }
    fn score(&self, _: &(), _: &str) -> Score {
        Score {
            reward: 0.0,
            correct: false,
            details: String::new(),
        }
    }
}

/// `cove serve`'s `POST /run_code`, one request per call.
struct Http {
    url: String,
}

impl ToolRunner for Http {
    fn run(&self, code: &str, stdin: &[u8], limits: &Limits) -> Result<Execution, String> {
        let started = Instant::now();
        let body = serde_json::json!({
            "code": code,
            "language": "python",
            "stdin": String::from_utf8_lossy(stdin),
            "run_timeout": limits.time.as_secs_f64(),
            "memory_limit_MB": limits.memory_bytes >> 20,
        });
        let reply: serde_json::Value = ureq::post(&self.url)
            .send_json(&body)
            .map_err(|e| e.to_string())?
            .body_mut()
            .read_json()
            .map_err(|e| e.to_string())?;
        let run = &reply["run_result"];
        let termination = match (run["status"].as_str(), run["return_code"].as_i64()) {
            (Some("TimeLimitExceeded"), _) => Termination::TimeLimit,
            (_, Some(code)) => Termination::Exited(code as i32),
            _ => return Err(format!("no run: {reply}")),
        };
        let text = |field: &str| run[field].as_str().unwrap_or_default().as_bytes().to_vec();
        Ok(Execution {
            termination,
            stdout: text("stdout"),
            stderr: text("stderr"),
            elapsed: started.elapsed(),
        })
    }
}

/// `python3 -c DRIVER`, one process per call, killed at the time limit.
struct Subprocess;

impl ToolRunner for Subprocess {
    fn run(&self, code: &str, stdin: &[u8], limits: &Limits) -> Result<Execution, String> {
        let started = Instant::now();
        let mut child = Command::new("python3")
            .args(["-c", code])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(stdin)
            .map_err(|e| e.to_string())?;
        while child.try_wait().map_err(|e| e.to_string())?.is_none() {
            if started.elapsed() > limits.time {
                child.kill().map_err(|e| e.to_string())?;
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        Ok(Execution {
            termination: match out.status.code() {
                Some(code) => Termination::Exited(code),
                None => Termination::TimeLimit,
            },
            stdout: out.stdout,
            stderr: out.stderr,
            elapsed: started.elapsed(),
        })
    }
}

fn limits() -> Limits {
    Limits {
        time: Duration::from_secs(4),
        memory_bytes: 256 << 20,
        stdout_bytes: 64 << 10,
        ..Limits::default()
    }
}

/// p50, p99 and mean of `ms`.
fn percentiles(mut ms: Vec<f64>) -> (f64, f64, f64) {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99), ms.iter().sum::<f64>() / ms.len() as f64)
}

/// Per-call latency of the third call of a session, `calls` times.
fn latency(tool: &CodeInterpreter<Unscored>, calls: usize) -> (f64, f64, f64) {
    let mut ms = Vec::with_capacity(calls);
    for _ in 0..calls {
        let mut session = PythonSession::default();
        for program in &PROGRAMS[..2] {
            let (_, error) = tool.call(&mut session, program);
            assert!(!error);
        }
        let t = Instant::now();
        let (text, error) = tool.call(&mut session, PROGRAMS[2]);
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(!error && text.trim() == "10 184756", "{text}");
    }
    percentiles(ms)
}

/// Every turn ends after `turn_chars` characters and is answered by the session's next
/// program (three per episode), through `tool`, or by a fixed text when there is none.
struct Forced {
    tool: Option<CodeInterpreter<Unscored>>,
    turn_chars: usize,
}

impl Environment for Forced {
    type Task = ();
    type Session = (PythonSession, usize);

    fn name(&self) -> &str {
        "forced-tool"
    }

    fn turn_ends(&self, turn: &str) -> bool {
        turn.chars().count() >= self.turn_chars
    }

    fn start(&self, _: &()) -> Self::Session {
        (PythonSession::default(), 0)
    }

    fn reply(&self, _: &(), session: &mut Self::Session, _: &str, _: usize) -> Reply {
        let (python, calls) = session;
        if *calls == PROGRAMS.len() {
            return Reply::End;
        }
        let t = Instant::now();
        let (text, error) = match &self.tool {
            Some(tool) => tool.call(python, PROGRAMS[*calls]),
            None => ("21\n".to_string(), false),
        };
        *calls += 1;
        Reply::Observe(Observation {
            text: format!("\n```output\n{text}```\n"),
            placement: Placement::Inline,
            tool_call: Some(ToolCall {
                error,
                seconds: t.elapsed().as_secs_f64(),
            }),
        })
    }

    fn score(&self, _: &(), _: &Self::Session, _: &str) -> Score {
        Unscored.score(&(), "")
    }
}

/// Episodes per second of `prompts × samples` forced-tool episodes, and the tool calls
/// they made.
fn episodes(policy: &Policy, env: Forced, o: &Options) -> (f64, usize) {
    let prompts: Vec<Vec<i64>> = (0..o.prompts)
        .map(|i| {
            let q = format!("What is the sum of row {} of Pascal's triangle?", 10 + i);
            let text = policy
                .apply_chat_template(&[Message::user(&q)], true)
                .unwrap();
            policy.encode(&text).unwrap()
        })
        .collect();
    let tasks: Vec<usize> = (0..o.prompts).collect();
    let keys: Vec<u64> = (0..o.prompts as u64).collect();
    let sampling = SamplingConfig {
        n: o.samples,
        max_new_tokens: 64,
        seed: 1,
        ..Default::default()
    };
    let limits = EpisodeLimits {
        max_turns: 8,
        max_tool_calls: 8,
        max_total_tokens: 1024,
    };
    let mut engine = MultiTurnEngine::new(env, vec![(); o.prompts], limits);
    let request = RolloutRequest {
        prompts: &prompts,
        tasks: &tasks,
        keys: &keys,
        sampling: &sampling,
        policy_version: 0,
    };
    let t = Instant::now();
    let out = engine.generate(policy, &request).unwrap();
    let seconds = t.elapsed().as_secs_f64();
    let calls = out
        .iter()
        .map(|e| e.episode.as_ref().map_or(0, |e| e.tool_calls))
        .sum();
    (out.len() as f64 / seconds, calls)
}

/// Starts `cove serve` on a free port with `workers` workers; waits until it answers.
fn start_server(workers: usize) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_cove"))
        .args(["serve", "--port", &port.to_string()])
        .args(["--workers", &workers.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cove serve starts");
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while ureq::get(&format!("{base}/health")).call().is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "cove serve did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, format!("{base}/run_code"))
}

fn main() {
    serve_if_worker();
    if std::env::args().any(|a| a == "--list") {
        println!("tool_calls: bench");
        return;
    }
    let o = options();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let sandbox = CodeVerifier::with_worker_processes(
        CodeConfig {
            threads: cores,
            limits: limits(),
            ..CodeConfig::default()
        },
        WorkerCommand::current_exe().unwrap(),
    )
    .expect("run scripts/setup.sh to build the sandbox component");
    let (mut server, url) = start_server(cores);
    let runners: Vec<(&str, Arc<dyn ToolRunner>)> = vec![
        ("in the rollout (sandbox workers)", Arc::new(sandbox)),
        (
            "cove serve over HTTP (SandboxFusion)",
            Arc::new(Http { url }),
        ),
        ("python3 -c subprocess (no sandbox)", Arc::new(Subprocess)),
    ];
    let tool = |runner: &Arc<dyn ToolRunner>| {
        CodeInterpreter::new(Unscored, runner.clone(), limits(), 512)
    };
    let policy = match resolve(DEFAULT_MODEL) {
        Ok(ModelSource::Folder(dir)) => {
            Some(Policy::from_hf_dir(&dir, Dtype::F32, tch::Device::Cpu).unwrap())
        }
        other => {
            eprintln!("episodes skipped: {other:?}");
            None
        }
    };
    println!(
        "{} calls per backend; episodes: SmolLM2-135M-Instruct, {} prompts x {} samples, \
         turns of {} characters, 3 tool calls each; {cores} cores\n",
        o.calls, o.prompts, o.samples, o.turn_chars
    );
    println!("| backend | p50 ms | p99 ms | mean ms | episodes/s | tool calls |");
    println!("|---|---|---|---|---|---|");
    if let Some(policy) = &policy {
        let env = Forced {
            tool: None,
            turn_chars: o.turn_chars,
        };
        let (rate, calls) = episodes(policy, env, &o);
        println!("| no tool (fixed observation) | - | - | - | {rate:.2} | {calls} |");
    }
    for (name, runner) in &runners {
        let (p50, p99, mean) = latency(&tool(runner), o.calls);
        let (rate, calls) = match &policy {
            Some(policy) => {
                let env = Forced {
                    tool: Some(tool(runner)),
                    turn_chars: o.turn_chars,
                };
                episodes(policy, env, &o)
            }
            None => (f64::NAN, 0),
        };
        println!("| {name} | {p50:.1} | {p99:.1} | {mean:.1} | {rate:.2} | {calls} |");
    }
    let _ = server.kill();
    let _ = server.wait();
}
