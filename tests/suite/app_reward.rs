//! Rewards from configuration and from Python, and TensorBoard event files:
//! - the README's ten-line Python server (`examples/reward_server.py`) scores batches
//!   through [`RemoteReward`];
//! - an endpoint that is down, hangs, fails once or answers wrongly ends with an error
//!   naming it (after retries where a retry can help);
//! - `train-math` with `[reward] url` trains on a real Python server's scores (the
//!   metrics' reward is exactly what the server returned), the overlong punishment and
//!   the format bonus add what they should, and `logging.tensorboard` writes event
//!   files that the `tensorboard` package reads back with the metrics' values.

use crate::test_util::run_binary;
use cove::reward::{RemoteItem, RemoteReward};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn venv_python() -> PathBuf {
    root().join(".venv/bin/python")
}

/// A free local port (bound, read, released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Python server started from `args`, stopped when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    /// Starts `python args... PORT` and waits until the port accepts connections.
    fn start(args: &[&str]) -> Server {
        let port = free_port();
        let child = Command::new(venv_python())
            .current_dir(root())
            .args(args)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start .venv/bin/python (scripts/setup.sh creates it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the server never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Stops it and returns what it wrote to stderr (http.server logs each request).
    fn stop(mut self) -> String {
        self.child.kill().ok();
        let mut log = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            err.read_to_string(&mut log).ok();
        }
        self.child.wait().ok();
        log
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

#[test]
fn the_readme_python_server_scores_batches() {
    let file = std::fs::read_to_string(root().join("examples/reward_server.py")).unwrap();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("```python\n{file}```")),
        "README.md shows examples/reward_server.py whole"
    );
    let server = Server::start(&["examples/reward_server.py"]);
    let client = RemoteReward::new(&server.url, Duration::from_secs(10), 0, 2).unwrap();
    let prompt = json!("What is 2+2?");
    let chat = json!([{"role": "user", "content": "What is 3+3?"}]);
    let task = json!({"answer": "4"});
    let responses = ["so \\boxed{4}", "4", "", "\\boxed{}", "no box ☃"];
    let items: Vec<RemoteItem> = responses
        .iter()
        .enumerate()
        .map(|(i, r)| RemoteItem {
            prompt: if i % 2 == 0 { &prompt } else { &chat },
            response: r,
            task: &task,
        })
        .collect();
    let scores = client.score(&items).unwrap();
    let rewards: Vec<f64> = scores.iter().map(|s| s.reward).collect();
    assert_eq!(rewards, vec![1.0, 0.0, 0.0, 1.0, 0.0]);
    let log = server.stop();
    // Five items at two per request: three requests.
    assert_eq!(log.matches("\"POST / HTTP/1.1\" 200").count(), 3, "{log}");
}

/// A one-shot HTTP responder on a free port: for each canned reply in turn, accepts a
/// connection, reads the request, writes the reply (`None`: reads and never answers).
fn canned(replies: Vec<Option<(u16, String)>>) -> (String, std::thread::JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut served = 0;
        let mut hung = Vec::new();
        for reply in replies {
            let Ok((stream, _)) = listener.accept() else {
                break;
            };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).ok();
            served += 1;
            match reply {
                Some((status, body)) => {
                    let mut stream = stream;
                    write!(
                        stream,
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .unwrap();
                }
                None => hung.push(stream),
            }
        }
        served
    });
    (url, handle)
}

#[test]
fn a_failing_endpoint_is_retried_where_that_can_help_and_named() {
    let ok = |scores: &str| Some((200, format!("{{\"scores\": {scores}}}")));
    let (prompt, task) = (json!("p"), json!({}));
    let items = vec![
        RemoteItem {
            prompt: &prompt,
            response: "a",
            task: &task,
        };
        2
    ];
    let client = |url: &str, retries| {
        RemoteReward::new(url, Duration::from_millis(1500), retries, 8).unwrap()
    };

    // A 503, then an answer: retried, and the scores (a number and an object) read.
    let (url, server) = canned(vec![
        Some((503, "busy".into())),
        ok(r#"[0.5, {"reward": -1, "details": "why"}]"#),
    ]);
    let scores = client(&url, 1).score(&items).unwrap();
    assert_eq!(scores[0].reward, 0.5);
    assert_eq!(
        (scores[1].reward, scores[1].details.as_deref()),
        (-1.0, Some("why"))
    );
    assert_eq!(server.join().unwrap(), 2);

    // A 400: not retried, the status and body in the error.
    let (url, server) = canned(vec![Some((400, "bad items".into()))]);
    let e = client(&url, 3).score(&items).unwrap_err().to_string();
    assert!(e.contains(&url) && e.contains("HTTP 400: bad items"), "{e}");
    assert_eq!(server.join().unwrap(), 1);

    // A count that does not match: not retried.
    let (url, server) = canned(vec![ok("[1.0]")]);
    let e = client(&url, 3).score(&items).unwrap_err().to_string();
    assert!(
        e.contains(&url) && e.contains("1 scores for 2 items"),
        "{e}"
    );
    assert_eq!(server.join().unwrap(), 1);

    // An endpoint that never answers: each attempt times out, then the error.
    let (url, _server) = canned(vec![None, None]);
    let t = Instant::now();
    let e = client(&url, 1).score(&items).unwrap_err().to_string();
    assert!(e.contains(&url) && e.contains("after 2 attempts"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

    // Nothing listening.
    let url = format!("http://127.0.0.1:{}", free_port());
    let e = client(&url, 0).score(&items).unwrap_err().to_string();
    assert!(e.contains(&url) && e.contains("after 1 attempts"), "{e}");
}

/// A scoring server for the end-to-end run: scores each response by its length (so the
/// rewards differ) and appends every item with its score to `items.jsonl`.
const RECORDING_SERVER: &str = r#"
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
log = open(sys.argv[1], "a")
class Scores(BaseHTTPRequestHandler):
    def do_POST(self):
        items = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["items"]
        scores = [len(item["response"]) % 7 / 7 for item in items]
        for item, score in zip(items, scores):
            log.write(json.dumps(dict(item, score=score)) + "\n")
        log.flush()
        body = json.dumps({"scores": scores}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
HTTPServer(("127.0.0.1", int(sys.argv[2])), Scores).serve_forever()
"#;

/// The `tensorboard` package's reader: every scalar tag of the run folder as
/// `{tag: [[step, value], ...]}`.
fn tensorboard_scalars(run: &Path) -> Value {
    let script = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
acc.Reload()
print(json.dumps({t: [[e.step, e.value] for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}))
"#;
    let out = Command::new(venv_python())
        .args(["-c", script])
        .arg(run)
        .output()
        .expect("run .venv/bin/python (scripts/setup.sh installs tensorboard)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn metrics(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn train_math_trains_on_a_python_reward_and_writes_tensorboard_events() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("items.jsonl");
    let server = Server::start(&["-c", RECORDING_SERVER, log.to_str().unwrap()]);
    let out = dir.path().join("run");
    let url = format!("reward.url=\"{}\"", server.url);
    let (ok, text) = run_binary(
        env!("CARGO_BIN_EXE_train-math"),
        [
            "--quiet",
            "--steps",
            "2",
            "--out",
            out.to_str().unwrap(),
            "--set",
            "model.path=\"tiny\"",
            "--set",
            "data.eval_limit=4",
            "--set",
            "eval.every=0",
            "--set",
            "reward.verifier_weight=0",
            "--set",
            &url,
            "--set",
            "reward.batch_size=5",
            "--set",
            "logging.tensorboard=true",
        ],
    );
    assert!(ok, "{text}");
    let requests = server.stop().matches("\"POST / HTTP/1.1\" 200").count();

    // Every response went to the server once (4 prompts x 8 samples x 2 steps, five
    // per request), with its prompt and the math task's answer.
    let items: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(items.len(), 64);
    assert_eq!(requests, 2 * 32usize.div_ceil(5));
    assert!(items.iter().all(|i| i["prompt"].is_string()
        && i["task"]["answer"].is_string()
        && i["response"].is_string()));

    // The metrics' reward is the server's, exactly (verifier weight 0).
    let steps = metrics(&out);
    for (m, batch) in steps.iter().zip(items.chunks(32)) {
        let mean = batch
            .iter()
            .map(|i| i["score"].as_f64().unwrap())
            .sum::<f64>()
            / 32.0;
        let got = m["reward_mean"].as_f64().unwrap();
        assert!((got - mean).abs() < 1e-12, "{got} vs {mean}");
    }
    assert!(steps[0]["reward_mean"].as_f64().unwrap() > 0.0);

    // TensorBoard: the same values at the same steps (as f32).
    let board = tensorboard_scalars(&out);
    for tag in ["reward_mean", "entropy", "cov/mean", "seconds/total", "lr"] {
        let path: Vec<&str> = tag.split('/').collect();
        let series = board[tag]
            .as_array()
            .unwrap_or_else(|| panic!("{tag}: {board}"));
        assert_eq!(series.len(), 2, "{tag}");
        for (point, m) in series.iter().zip(&steps) {
            let want = path.iter().fold(m, |v, k| &v[*k]).as_f64().unwrap();
            assert_eq!(point[0], m["step"], "{tag}");
            assert_eq!(point[1].as_f64().unwrap() as f32, want as f32, "{tag}");
        }
    }
}

#[test]
fn overlong_and_format_terms_add_what_they_should() {
    // The tiny model writes no `\boxed{`: a format pattern that every response matches
    // (the empty regex) gives each the bonus; max_new_tokens 8 with buffer 8 and no EOS
    // before the limit gives -penalty to every response that runs to the limit.
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, sets: &[&str]| {
        let out = dir.path().join(name);
        let mut args = vec![
            "--quiet".to_string(),
            "--steps".into(),
            "1".into(),
            "--out".into(),
            out.display().to_string(),
        ];
        for s in [
            "model.path=\"tiny\"",
            "data.eval_limit=4",
            "eval.every=0",
            "trainer.rollout.max_new_tokens=8",
        ]
        .iter()
        .chain(sets)
        {
            args.extend(["--set".to_string(), s.to_string()]);
        }
        let (ok, text) = run_binary(env!("CARGO_BIN_EXE_train-math"), &args);
        assert!(ok, "{text}");
        metrics(&out).remove(0)
    };
    let plain = run("plain", &[]);
    let shaped = run(
        "shaped",
        &[
            "reward.verifier_weight=0.5",
            "reward.format_bonus=0.25",
            "reward.format_pattern=\"\"",
            "reward.overlong={buffer=8, penalty=2.0}",
        ],
    );
    // Same seed, same policy: the same responses; every term is the configured one.
    assert_eq!(plain["response_len_mean"], shaped["response_len_mean"]);
    let n = 32.0;
    let truncated = plain["truncation_rate"].as_f64().unwrap() * n;
    let len_mean = plain["response_len_mean"].as_f64().unwrap();
    let accuracy = plain["accuracy"].as_f64().unwrap();
    let overlong_total = -2.0 * (len_mean * n / 8.0);
    // Each response's punishment is 2 * len / 8 (buffer = max): the sum is 2 * total / 8.
    let want = 0.5 * plain["reward_mean"].as_f64().unwrap() + 0.25 + overlong_total / n;
    let got = shaped["reward_mean"].as_f64().unwrap();
    assert!(
        (got - want).abs() < 1e-9,
        "{got} vs {want} ({truncated} cut)"
    );
    assert_eq!(shaped["accuracy"].as_f64().unwrap(), accuracy);

    // A bad field is refused before any work, named.
    let (ok, text) = run_binary(
        env!("CARGO_BIN_EXE_train-math"),
        [
            "--quiet",
            "--out",
            dir.path().join("bad").to_str().unwrap(),
            "--set",
            "model.path=\"tiny\"",
            "--set",
            "reward.overlong={buffer=64, penalty=1.0}",
        ],
    );
    assert!(!ok && text.contains("reward.overlong.buffer"), "{text}");
}
