//! `cove serve` end to end: the real binary on a free port, spoken to over raw HTTP/1.1
//! (so malformed and oversized bodies can be sent as they are). SandboxFusion's
//! `/run_code` fields and statuses, Cove's `/verify/*`, the limits (413, 503, 400) and
//! 200 concurrent requests.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `cove serve`, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// Starts `cove serve --port 0` with `args` and waits for its address line.
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cove"))
            .args(["serve", "--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cove serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("cove serve: listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        Server { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server with two workers and a 64 KiB body limit. Each test starts its own: a
/// static one would outlive the test process (statics are never dropped).
fn server() -> Server {
    Server::start(&["--workers", "2", "--max-body-bytes", "65536"])
}

/// Sends one request (`Connection: close`) and returns the status code and the body.
fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // A server that answers before reading all of a large body may close the socket.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a full response");
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, body.to_string())
}

/// POSTs `body` as JSON and parses the JSON answer.
fn post(addr: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    let (code, text) = request(addr, "POST", path, body.to_string().as_bytes());
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (code, value)
}

fn run_code(server: &Server, body: Value) -> Value {
    let (code, answer) = post(server.addr, "/run_code", &body);
    assert_eq!(code, 200, "{answer}");
    answer
}

#[test]
fn run_code_answers_every_sandbox_fusion_field() {
    let server = server();
    let answer = run_code(
        &server,
        json!({
            "code": "import sys\nname = input()\nprint('hello', name)\nprint('warn', file=sys.stderr)",
            "stdin": "cove\n",
            "language": "python",
            "run_timeout": 5,
            "compile_timeout": 5,
            "memory_limit_MB": 256,
            "files": {},
            "fetch_files": [],
        }),
    );
    assert_eq!(answer["status"], "Success", "{answer}");
    assert_eq!(answer["message"], "");
    assert!(answer["compile_result"].is_null());
    assert!(answer["executor_pod_name"].is_null());
    assert_eq!(answer["files"], json!({}));
    let run = &answer["run_result"];
    assert_eq!(run["status"], "Finished");
    assert_eq!(run["return_code"], 0);
    assert_eq!(run["stdout"], "hello cove\n");
    assert_eq!(run["stderr"], "warn\n");
    let t = run["execution_time"].as_f64().unwrap();
    assert!(t > 0.0 && t < 5.0, "{t}");
}

#[test]
fn run_code_reports_failures_and_timeouts() {
    let server = server();
    let failed = run_code(
        &server,
        json!({"code": "import sys\nprint('x')\nsys.exit(3)", "language": "python"}),
    );
    assert_eq!(failed["status"], "Failed");
    assert_eq!(failed["run_result"]["status"], "Finished");
    assert_eq!(failed["run_result"]["return_code"], 3);
    assert_eq!(failed["run_result"]["stdout"], "x\n");
    let raised = run_code(
        &server,
        json!({"code": "raise ValueError('boom')", "language": "python"}),
    );
    assert_eq!(raised["status"], "Failed");
    assert_eq!(raised["run_result"]["return_code"], 1);
    assert!(
        raised["run_result"]["stderr"]
            .as_str()
            .unwrap()
            .contains("ValueError: boom")
    );
    let slow = run_code(
        &server,
        json!({"code": "while True: pass", "language": "python", "run_timeout": 0.5}),
    );
    assert_eq!(slow["status"], "Failed");
    assert_eq!(slow["run_result"]["status"], "TimeLimitExceeded");
    assert!(slow["run_result"]["return_code"].is_null());
    let t = slow["run_result"]["execution_time"].as_f64().unwrap();
    assert!((0.4..3.0).contains(&t), "{t}");
    let syntax = run_code(&server, json!({"code": "def f(:", "language": "python"}));
    assert_eq!(syntax["status"], "Failed");
    assert!(
        syntax["run_result"]["stderr"]
            .as_str()
            .unwrap()
            .contains("SyntaxError")
    );
}

#[test]
fn run_code_refuses_other_languages_and_files_with_a_message() {
    let server = server();
    let cpp = run_code(&server, json!({"code": "int main(){}", "language": "cpp"}));
    assert_eq!(cpp["status"], "Failed");
    assert!(
        cpp["message"].as_str().unwrap().contains("python only"),
        "{cpp}"
    );
    assert!(cpp["run_result"].is_null());
    let files = run_code(
        &server,
        json!({"code": "print(1)", "language": "python", "files": {"a": "eA=="}}),
    );
    assert_eq!(files["status"], "Failed");
    assert!(files["message"].as_str().unwrap().contains("filesystem"));
}

#[test]
fn malformed_json_is_a_400_with_a_message() {
    let server = server();
    let addr = server.addr;
    let (code, body) = request(addr, "POST", "/run_code", b"{\"code\": \"print(1)\",");
    assert_eq!(code, 400, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["status"], "SandboxError");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("malformed request JSON")
    );
    let (code, body) = request(addr, "POST", "/run_code", br#"{"language": "python"}"#);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("code"), "the missing field is named: {body}");
    let (code, body) = request(
        addr,
        "POST",
        "/run_code",
        br#"{"code": "", "language": "python", "run_timeout": -2}"#,
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("run_timeout"), "{body}");
    let (code, _) = request(addr, "POST", "/verify/math", b"[1, 2]");
    assert_eq!(code, 400);
}

#[test]
fn an_oversized_body_is_a_413() {
    let code_text = format!("# {}\nprint(1)", "x".repeat(70_000));
    let body = json!({"code": code_text, "language": "python"}).to_string();
    let (code, text) = request(server().addr, "POST", "/run_code", body.as_bytes());
    assert_eq!(code, 413, "{text}");
    assert!(text.contains("SandboxError"), "{text}");
}

#[test]
fn verify_endpoints_take_one_item_or_a_batch() {
    let server = server();
    let addr = server.addr;
    let (code, one) = post(
        addr,
        "/verify/math",
        &json!({"gold": "\\frac{1}{2}", "response": "so the answer is \\boxed{0.5}"}),
    );
    assert_eq!(code, 200, "{one}");
    assert_eq!(one["correct"], true, "{one}");
    assert_eq!(one["extracted"], "0.5");
    let (_, many) = post(
        addr,
        "/verify/math",
        &json!([
            {"gold": "7", "response": "#### 7"},
            {"gold": "7", "response": "the answer is 8"},
        ]),
    );
    assert_eq!(many.as_array().unwrap().len(), 2);
    assert_eq!(
        (many[0]["correct"].clone(), many[1]["correct"].clone()),
        (json!(true), json!(false))
    );
    let tests = json!({"kind": "stdio", "inputs": ["2\n", "5\n"], "outputs": ["4\n", "25\n"]});
    let (code, report) = post(
        addr,
        "/verify/code",
        &json!({"response": "```python\nn = int(input())\nprint(n * n)\n```", "tests": tests}),
    );
    assert_eq!(code, 200, "{report}");
    assert_eq!(
        (report["score"].clone(), report["passed"].clone()),
        (json!(1.0), json!(2))
    );
    let (_, reports) = post(
        addr,
        "/verify/code",
        &json!([
            {"response": "print(int(input()) * 2)", "tests": tests},
            {"response": "print(int(input()) ** 2)", "tests": tests},
        ]),
    );
    assert_eq!(reports[0]["passed"], 1, "{reports}");
    assert_eq!(reports[1]["passed"], 2, "{reports}");
    let (code, _) = request(addr, "POST", "/health", b"{}");
    assert_eq!(code, 405, "GET only");
    let (code, body) = request(addr, "GET", "/health", b"");
    assert_eq!(code, 200);
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["workers_alive"], 2);
}

#[test]
fn two_hundred_concurrent_requests_are_all_answered_correctly() {
    let server = server();
    let addr = server.addr;
    let answers: Vec<(usize, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..200)
            .map(|i| {
                scope.spawn(move || {
                    let body = json!({
                        "code": format!("n = int(input())\nprint(n * {i})"),
                        "stdin": "3\n",
                        "language": "python",
                    });
                    (i, post(addr, "/run_code", &body).1)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, answer) in answers {
        assert_eq!(answer["status"], "Success", "request {i}: {answer}");
        assert_eq!(
            answer["run_result"]["stdout"],
            format!("{}\n", 3 * i),
            "request {i}"
        );
    }
}

#[test]
fn a_full_queue_is_a_503_and_the_server_recovers() {
    let server = Server::start(&["--workers", "1", "--queue", "0"]);
    let addr = server.addr;
    let slow = json!({"code": "import time\ntime.sleep(1.5)", "language": "python"});
    let busy = std::thread::spawn(move || post(addr, "/run_code", &slow));
    std::thread::sleep(Duration::from_millis(500));
    let (code, answer) = post(
        addr,
        "/run_code",
        &json!({"code": "print(1)", "language": "python"}),
    );
    assert_eq!(code, 503, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("busy"),
        "{answer}"
    );
    let (code, first) = busy.join().unwrap();
    assert_eq!(
        (code, first["status"].clone()),
        (200, json!("Success")),
        "{first}"
    );
    let (code, again) = post(
        addr,
        "/run_code",
        &json!({"code": "print(1)", "language": "python"}),
    );
    assert_eq!(
        (code, again["status"].clone()),
        (200, json!("Success")),
        "{again}"
    );
}

#[test]
fn hostile_programs_leave_the_server_serving() {
    let server = server();
    let addr = server.addr;
    let hostile = [
        "x = bytearray(1 << 40)",
        "while True: print('y' * 100000)",
        "def f(n): return f(n + 1)\nf(0)",
        "import os\nos._exit(7)",
        "import socket\nsocket.create_connection(('127.0.0.1', 80))",
        "print(open('/etc/passwd').read())",
    ];
    for code in hostile {
        let (status, answer) = post(
            addr,
            "/run_code",
            &json!({"code": code, "language": "python"}),
        );
        assert_eq!(status, 200, "{code}: {answer}");
        assert_eq!(answer["status"], "Failed", "{code}: {answer}");
        assert!(!answer["run_result"].is_null(), "{code}: {answer}");
    }
    let (_, body) = request(addr, "GET", "/health", b"");
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["workers_alive"], 2, "{health}");
    let ok = run_code(
        &server,
        json!({"code": "print(2 + 2)", "language": "python"}),
    );
    assert_eq!(ok["run_result"]["stdout"], "4\n");
}

#[test]
fn a_request_past_the_timeout_is_a_504() {
    let server = Server::start(&["--workers", "1", "--request-timeout-s", "0.5"]);
    let body = json!({"code": "import time\ntime.sleep(2)", "language": "python"});
    let (code, answer) = post(server.addr, "/run_code", &body);
    assert_eq!(code, 504, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("timeout"),
        "{answer}"
    );
}

/// The worker processes of a server (its direct children).
fn workers_of(server: &Server) -> Vec<u32> {
    let pid = server.child.id();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .map(|p| p.parse().unwrap())
                .collect::<Vec<u32>>()
        })
        .collect()
}

#[test]
fn a_killed_worker_is_a_sandbox_error_and_is_replaced() {
    let server = Server::start(&["--workers", "1"]);
    let workers = workers_of(&server);
    assert_eq!(workers.len(), 1, "{workers:?}");
    let killed = Command::new("kill")
        .args(["-9", &workers[0].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let body = json!({"code": "print('after')", "language": "python"});
    let (code, answer) = post(server.addr, "/run_code", &body);
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["status"], "SandboxError", "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("sandbox worker failed"),
        "{answer}"
    );
    let (_, again) = post(server.addr, "/run_code", &body);
    assert_eq!(
        again["status"], "Success",
        "the worker was replaced: {again}"
    );
    assert_eq!(again["run_result"]["stdout"], "after\n");
    assert_ne!(workers_of(&server), workers, "a new worker process");
}
