//! Hostile programs: each is contained with the right verdict, nothing leaks out of the
//! sandbox, and (ignored test) 1,000 hostile runs leave the host process healthy.

use cove_verifiers::code::{Limits, RuntimeKind, Sandbox, Termination};
use std::sync::OnceLock;
use std::time::Duration;

fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| {
        Sandbox::new(RuntimeKind::Component)
            .expect("run scripts/setup.sh to build the sandbox component")
    })
}

fn limits() -> Limits {
    Limits {
        time: Duration::from_millis(1000),
        memory_bytes: 256 << 20,
        stdout_bytes: 1 << 20,
        stderr_bytes: 16 << 10,
    }
}

struct Run {
    termination: Termination,
    stdout: String,
    stderr: String,
}

fn run(code: &str) -> Run {
    let e = sandbox().run(code, b"", &limits());
    Run {
        termination: e.termination,
        stdout: String::from_utf8_lossy(&e.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&e.stderr).into_owned(),
    }
}

/// Runs `code` and expects an uncaught exception whose traceback names `error`.
fn expect_exception(code: &str, error: &str) -> Run {
    let r = run(code);
    assert_eq!(
        r.termination,
        Termination::Exited(1),
        "{code}\nstdout: {}\nstderr: {}",
        r.stdout,
        r.stderr
    );
    assert!(
        r.stderr.contains(error),
        "{code}: expected {error} in stderr:\n{}",
        r.stderr
    );
    r
}

#[test]
fn cannot_read_host_files() {
    let r = expect_exception("print(open('/etc/passwd').read())", "Error");
    assert!(!r.stdout.contains("root:"));
    expect_exception("print(open('../../../../etc/hostname').read())", "Error");
    expect_exception("import os\nprint(os.stat('/etc/passwd'))", "Error");
}

#[test]
fn cannot_write_or_list_files() {
    expect_exception("open('out.txt', 'w').write('x')", "Error");
    expect_exception("open('/tmp/cove-escape', 'w').write('x')", "Error");
    expect_exception("import os\nprint(os.listdir('/'))", "Error");
    expect_exception("import os\nprint(os.listdir('.'))", "Error");
    expect_exception("import os\nos.mkdir('d')", "Error");
    assert!(!std::path::Path::new("/tmp/cove-escape").exists());
}

#[test]
fn has_no_network() {
    expect_exception(
        "import socket\nsocket.create_connection(('127.0.0.1', 22))",
        "Error",
    );
    expect_exception(
        "import urllib.request\nurllib.request.urlopen('http://example.com')",
        "Error",
    );
}

#[test]
fn cannot_start_processes() {
    expect_exception("import os\nos.system('echo escaped')", "Error");
    expect_exception("import os\nos.fork()", "Error");
    expect_exception("import subprocess\nsubprocess.run(['ls'])", "Error");
    expect_exception("import os\nos.execv('/bin/sh', ['sh'])", "Error");
}

#[test]
fn sees_no_host_environment_variables() {
    // The test process itself has PATH and HOME; the guest must see none of them.
    assert!(std::env::var_os("PATH").is_some());
    let r = run("import os\nprint(sorted(os.environ.items()))");
    assert_eq!(r.termination, Termination::Exited(0), "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "[]");
}

#[test]
fn infinite_loops_hit_the_deadline() {
    assert_eq!(
        run("while True:\n    pass").termination,
        Termination::TimeLimit
    );
    assert_eq!(
        run("x = 0\nwhile True:\n    x += 1").termination,
        Termination::TimeLimit
    );
}

#[test]
fn sleeping_past_the_deadline_is_cut() {
    let e = sandbox().run("import time\ntime.sleep(30)\nprint('woke')", b"", &limits());
    assert_eq!(e.termination, Termination::TimeLimit);
    assert!(e.stdout.is_empty());
    // Not a speed claim: a 30 s sleep under a 1 s deadline must not block for 30 s.
    assert!(e.elapsed < Duration::from_secs(10), "{:?}", e.elapsed);
    let ok = run("import time\ntime.sleep(0.01)\nprint('woke')");
    assert_eq!(
        (ok.termination, ok.stdout.trim()),
        (Termination::Exited(0), "woke")
    );
}

#[test]
fn memory_bombs_hit_the_memory_cap() {
    assert_eq!(
        run("x = []\nwhile True:\n    x.append(bytearray(10**7))").termination,
        Termination::MemoryLimit
    );
    assert_eq!(
        run("x = bytearray(1 << 30)").termination,
        Termination::MemoryLimit
    );
    assert_eq!(
        run("s = 'a' * (400 * 2**20)").termination,
        Termination::MemoryLimit
    );
}

#[test]
fn output_floods_hit_the_output_cap() {
    assert_eq!(
        run("while True:\n    print('x' * 1000)").termination,
        Termination::OutputLimit
    );
    assert_eq!(
        run("import sys\nsys.stdout.write('y' * (2 << 20))").termination,
        Termination::OutputLimit
    );
}

#[test]
fn deep_recursion_is_contained() {
    expect_exception("def f(n):\n    return f(n + 1) + 1\nf(0)", "RecursionError");
    // Recursion through C code (lru_cache) with the limit lifted: a clean RecursionError
    // or a wasm stack-overflow trap, never a host crash.
    let r = run(
        "import sys, functools\nsys.setrecursionlimit(10**7)\n@functools.lru_cache(None)\n\
                 def f(n):\n    return 0 if n == 0 else f(n - 1) + 1\nprint(f(10**6))",
    );
    assert!(
        matches!(
            &r.termination,
            Termination::Trap(_) | Termination::Exited(1)
        ),
        "{:?} {}",
        r.termination,
        r.stderr
    );
    // Pure-Python frames live on the heap (CPython 3.11+): unbounded recursion ends at
    // the deadline or the memory cap.
    let r =
        run("import sys\nsys.setrecursionlimit(10**8)\ndef f(n):\n    return f(n + 1) + 1\nf(0)");
    assert!(
        matches!(
            &r.termination,
            Termination::TimeLimit | Termination::MemoryLimit | Termination::Exited(1)
        ),
        "{:?} {}",
        r.termination,
        r.stderr
    );
}

#[test]
fn huge_integers_are_contained() {
    expect_exception("print(10 ** 100000)", "ValueError");
    let r = run("import sys\nsys.set_int_max_str_digits(0)\nprint(7 ** 5_000_000)");
    assert!(
        matches!(
            r.termination,
            Termination::TimeLimit | Termination::OutputLimit
        ),
        "{:?}",
        r.termination
    );
}

#[test]
fn odd_exit_codes_are_reported() {
    assert_eq!(
        run("import sys\nsys.exit(3)").termination,
        Termination::Exited(3)
    );
    assert_eq!(
        run("import sys\nsys.exit(-1)").termination,
        Termination::Exited(255)
    );
    assert_eq!(
        run("import sys\nsys.exit(256)").termination,
        Termination::Exited(0)
    );
    let r = run("import sys\nsys.exit('bye')");
    assert_eq!(r.termination, Termination::Exited(1));
    assert!(r.stderr.contains("bye"));
    // WASI preview2's `exit` carries only success or failure: `os._exit(7)` reads as 1.
    assert_eq!(
        run("import os\nos._exit(7)").termination,
        Termination::Exited(1)
    );
    assert_eq!(
        run("import os\nos._exit(0)").termination,
        Termination::Exited(0)
    );
    assert_eq!(
        run("raise SystemExit(0)").termination,
        Termination::Exited(0)
    );
    assert_eq!(
        run("raise KeyboardInterrupt").termination,
        Termination::Exited(1)
    );
}

#[test]
fn threads_and_signals_fail_cleanly() {
    expect_exception(
        "import threading\nthreading.Thread(target=print).start()",
        "Error",
    );
    expect_exception("import signal\nsignal.alarm(1)", "Error");
}

#[test]
fn each_run_starts_fresh() {
    let a = run("import sys\nsys.modules['math'].pi = 3\nprint('set')");
    assert_eq!(a.termination, Termination::Exited(0));
    let b = run("import math\nprint(math.pi)");
    assert_eq!(b.stdout.trim(), std::f64::consts::PI.to_string());
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

/// 1,000 hostile runs in one process: the host stays healthy and its resident memory
/// does not grow. Run with `cargo test -p cove-verifiers --test code_hostile -- --ignored --nocapture`.
#[test]
#[ignore = "about a minute; run explicitly for the RSS measurement"]
fn a_thousand_hostile_runs_leave_the_host_healthy() {
    let programs = [
        "print(open('/etc/passwd').read())",
        "import os\nprint(os.listdir('/'))",
        "import socket\nsocket.create_connection(('127.0.0.1', 22))",
        "import os\nos.system('ls')",
        "import os\nprint(os.environ['PATH'])",
        "x = []\nwhile True:\n    x.append(bytearray(10**7))",
        "while True:\n    print('x' * 1000)",
        "def f(n):\n    return f(n + 1) + 1\nf(0)",
        "import sys\nsys.setrecursionlimit(10**7)\ndef f(n):\n    return f(n + 1) + 1\nf(0)",
        "print(10 ** 100000)",
        "import sys\nsys.exit(3)",
        "import os\nos._exit(7)",
        "while True:\n    pass",
        "import time\ntime.sleep(30)",
        "def oops(:\n  pass",
    ];
    let limits = Limits {
        time: Duration::from_millis(100),
        ..limits()
    };
    let total = 1000;
    let warmup = 100;
    let mut rss_after_warmup = 0;
    let start = std::time::Instant::now();
    for i in 0..total {
        if i == warmup {
            rss_after_warmup = rss_kib();
        }
        let e = sandbox().run(programs[i % programs.len()], b"", &limits);
        assert_ne!(
            e.termination,
            Termination::Exited(0),
            "{}",
            programs[i % programs.len()]
        );
    }
    let rss_end = rss_kib();
    let ok = sandbox().run("print(sum(range(10)))", b"", &limits);
    assert_eq!(
        (
            ok.termination,
            String::from_utf8_lossy(&ok.stdout).trim().to_string()
        ),
        (Termination::Exited(0), "45".into())
    );
    println!(
        "{total} hostile runs in {:.1} s; VmRSS after {warmup} runs: {rss_after_warmup} KiB, after {total}: {rss_end} KiB (growth {} KiB)",
        start.elapsed().as_secs_f64(),
        rss_end as i64 - rss_after_warmup as i64
    );
    assert!(
        rss_end < rss_after_warmup + 64 * 1024,
        "RSS grew from {rss_after_warmup} KiB to {rss_end} KiB"
    );
}
