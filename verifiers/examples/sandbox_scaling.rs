//! Threads against worker processes: sandbox executions per second of a batch verified
//! by `WORKERS` threads of this process, or by `WORKERS` worker processes.
//!
//! ```text
//! cargo run -p cove-verifiers --example sandbox_scaling -- 2 400 typical threads
//! cargo run -p cove-verifiers --example sandbox_scaling -- 2 400 typical processes
//! ```
//! Arguments: workers (default 1), executions (default 200), program (`trivial` or
//! `typical`, the two programs of the `code_sandbox` bench), `threads` (default) or
//! `processes`.

use cove_verifiers::code::{CodeConfig, CodeVerifier, TestSuite, WorkerCommand, serve_if_worker};
use std::time::Instant;

const TRIVIAL: &str = "print(1 + 1)";
const TYPICAL: &str = "import sys\ninput = sys.stdin.readline\nn = int(input())\nxs = sorted(map(int, input().split()))\n\
                       print(sum(xs[i] * (i + 1) for i in range(n)) % 1000000007)\nprint(*xs[:10])";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    serve_if_worker();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let threads: usize = args.first().map_or(Ok(1), |a| a.parse())?;
    let runs: usize = args.get(1).map_or(Ok(200), |a| a.parse())?;
    let program = args.get(2).map_or("typical", String::as_str);
    let mode = args.get(3).map_or("threads", String::as_str);
    let config = CodeConfig {
        threads,
        ..CodeConfig::default()
    };
    let verifier = match mode {
        "threads" => CodeVerifier::new(config)?,
        "processes" => CodeVerifier::with_worker_processes(config, WorkerCommand::current_exe()?)?,
        other => return Err(format!("unknown mode `{other}` (threads, processes)").into()),
    };
    let (code, suite) = match program {
        "trivial" => (
            TRIVIAL,
            TestSuite::Stdio {
                inputs: vec![String::new()],
                outputs: vec!["2".into()],
                float_tolerance: None,
            },
        ),
        "typical" => {
            let n = 1000;
            let xs: Vec<i64> = (0..n).map(|i| (i * 7919) % 10007).collect();
            let text: Vec<String> = xs.iter().map(i64::to_string).collect();
            let mut sorted = xs.clone();
            sorted.sort_unstable();
            let total = sorted
                .iter()
                .enumerate()
                .map(|(i, x)| x * (i as i64 + 1))
                .sum::<i64>()
                % 1_000_000_007;
            let head: Vec<String> = sorted[..10].iter().map(i64::to_string).collect();
            (
                TYPICAL,
                TestSuite::Stdio {
                    inputs: vec![format!("{n}\n{}\n", text.join(" "))],
                    outputs: vec![format!("{total}\n{}\n", head.join(" "))],
                    float_tolerance: None,
                },
            )
        }
        other => return Err(format!("unknown program `{other}` (trivial, typical)").into()),
    };
    let items: Vec<(&str, &TestSuite)> = (0..runs).map(|_| (code, &suite)).collect();
    // Warm-up: the first executions load the compiled runtime.
    let warm = verifier.verify_batch(&items[..threads.max(1)]);
    if let Some(bad) = warm.iter().find(|r| !r.all_passed()) {
        return Err(format!("the {program} program is not accepted: {bad:?}").into());
    }
    let started = Instant::now();
    let reports = verifier.verify_batch(&items);
    let seconds = started.elapsed().as_secs_f64();
    let accepted = reports.iter().filter(|r| r.all_passed()).count();
    println!(
        "{program}: {runs} executions on {threads} {mode} in {seconds:.2} s: {:.0} executions/s ({accepted} accepted)",
        runs as f64 / seconds
    );
    Ok(())
}
