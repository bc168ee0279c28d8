//! Code sandbox throughput: executions per second for a trivial program and a typical
//! stdin/stdout solution, on one worker and on all cores (threads of this process, and
//! worker processes), a CPU-bound program, and the same programs through native
//! `python3 -c` subprocesses side by side.
//!
//! Run: `cargo bench -p cove-verifiers --bench code_sandbox` (after `scripts/setup.sh`).

use cove_verifiers::code::{
    CodeConfig, CodeVerifier, Limits, RuntimeKind, Sandbox, Termination, TestSuite, WorkerCommand,
    serve_if_worker,
};
use criterion::{Criterion, Throughput, criterion_group};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const TRIVIAL: &str = "print(1 + 1)";
const TYPICAL: &str = "import sys\ninput = sys.stdin.readline\nn = int(input())\nxs = sorted(map(int, input().split()))\n\
                       print(sum(xs[i] * (i + 1) for i in range(n)) % 1000000007)\nprint(*xs[:10])";
const CPU_BOUND: &str = "n = 300000\nsieve = [True] * (n + 1)\nfor i in range(2, n + 1):\n    if sieve[i]:\n        \
                         for j in range(i * i, n + 1, i):\n            sieve[j] = False\ntotal = 0\nfor i in range(2000000):\n    \
                         total = (total + i * i) % 1000003\nprint(sum(sieve) - 2, total)";

fn typical_input() -> Vec<u8> {
    let n = 1000;
    let xs: Vec<String> = (0..n).map(|i| ((i * 7919) % 10007).to_string()).collect();
    format!("{n}\n{}\n", xs.join(" ")).into_bytes()
}

fn native(code: &str, stdin: &[u8]) {
    let mut child = Command::new("python3")
        .args(["-c", code])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 on PATH");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
}

fn bench(c: &mut Criterion) {
    let sandbox =
        Arc::new(Sandbox::new(RuntimeKind::Component).expect("run scripts/setup.sh first"));
    let limits = Limits {
        time: Duration::from_secs(30),
        ..Limits::default()
    };
    let input = typical_input();
    let check = |code: &str, stdin: &[u8]| {
        let e = sandbox.run(code, stdin, &limits);
        assert_eq!(
            e.termination,
            Termination::Exited(0),
            "{}",
            String::from_utf8_lossy(&e.stderr)
        );
    };
    check(TRIVIAL, b"");
    check(TYPICAL, &input);

    let mut group = c.benchmark_group("code_sandbox");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(1));
    group.bench_function("trivial/one_worker", |b| b.iter(|| check(TRIVIAL, b"")));
    group.bench_function("typical_stdio/one_worker", |b| {
        b.iter(|| check(TYPICAL, &input))
    });
    group.bench_function("native_python3/trivial", |b| {
        b.iter(|| native(TRIVIAL, b""))
    });
    group.bench_function("native_python3/typical_stdio", |b| {
        b.iter(|| native(TYPICAL, &input))
    });

    // All cores: a batch through the verifier's threads (one engine, shared), then
    // through its worker processes (one engine each).
    let config = CodeConfig {
        limits: limits.clone(),
        ..CodeConfig::default()
    };
    let threads = CodeVerifier::with_sandbox(sandbox.clone(), config.clone()).expect("thread pool");
    let command = WorkerCommand::current_exe().expect("this executable");
    let processes = CodeVerifier::with_worker_processes(config, command).expect("worker processes");
    let batch = 64;
    let trivial_suite = TestSuite::Stdio {
        inputs: vec![String::new()],
        outputs: vec!["2".into()],
        float_tolerance: None,
    };
    let typical_out = String::from_utf8(sandbox.run(TYPICAL, &input, &limits).stdout).unwrap();
    let typical_suite = TestSuite::Stdio {
        inputs: vec![String::from_utf8(input.clone()).unwrap()],
        outputs: vec![typical_out],
        float_tolerance: None,
    };
    let trivial_items: Vec<(&str, &TestSuite)> =
        (0..batch).map(|_| (TRIVIAL, &trivial_suite)).collect();
    let typical_items: Vec<(&str, &TestSuite)> =
        (0..batch).map(|_| (TYPICAL, &typical_suite)).collect();
    group.throughput(Throughput::Elements(batch as u64));
    for (mode, verifier) in [("threads", &threads), ("processes", &processes)] {
        for (program, items) in [
            ("trivial", &trivial_items),
            ("typical_stdio", &typical_items),
        ] {
            group.bench_function(format!("{program}/all_cores_{mode}"), |b| {
                b.iter(|| assert!(verifier.verify_batch(items).iter().all(|r| r.all_passed())))
            });
        }
    }
    group.finish();

    let mut cpu = c.benchmark_group("code_sandbox_cpu_bound");
    cpu.sample_size(10)
        .measurement_time(Duration::from_secs(10));
    cpu.bench_function("sandbox", |b| b.iter(|| check(CPU_BOUND, b"")));
    cpu.bench_function("native_python3", |b| b.iter(|| native(CPU_BOUND, b"")));
    cpu.finish();
}

criterion_group!(benches, bench);

fn main() {
    // The worker processes of the `all_cores_processes` cases re-run this binary.
    serve_if_worker();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
