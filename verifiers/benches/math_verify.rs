//! Math-verifier throughput and latency on a mixed set of responses: GSM8K-style worked
//! answers, fractions, radicals, polynomials, intervals and sets, matrices, multiple
//! choice, and wrong answers of each kind.
//!
//! `cargo bench -p cove-verifiers --bench math_verify` reports items/s on one thread
//! (`one_thread`) and on the whole rayon pool (`all_threads`), and prints p50/p99/max
//! single-item latency measured on one thread before the criterion runs.

use cove_verifiers::math::{MathOptions, verify, verify_batch};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Instant;

fn mixed_items() -> Vec<(String, String)> {
    let gsm = |n: &str, text: &str| {
        (
            n.to_string(),
            format!(
                "Let's think step by step. {text} She buys 3 packs at $4 each, so 3 * 4 = 12 dollars.\n\
                 Then she pays 12 + 6 = 18 dollars in total.\n#### {n}"
            ),
        )
    };
    let boxed = |g: &str, a: &str| {
        (
            g.to_string(),
            format!(
                "We simplify the expression step by step, using the identities above.\n\
                 Combining terms, we obtain the result.\nTherefore, the final answer is $\\boxed{{{a}}}$."
            ),
        )
    };
    vec![
        gsm("18", "Janet has 16 eggs and eats 3."),
        gsm("1,000", "The house costs 80,000."),
        gsm("70000", "The profit is computed below."),
        (
            "540".into(),
            "He sprints 3*3=<<3*3=9>>9 times\nSo he runs 9*60=<<9*60=540>>540 meters\n#### 540"
                .into(),
        ),
        ("20".into(), "So the answer is 20 dollars.".into()),
        boxed("\\frac{1}{2}", "0.5"),
        boxed("\\frac{14}{3}", "\\dfrac{14}{3}"),
        boxed("-\\frac{24}{25}", "-0.96"),
        boxed("\\frac{3}{56}", "\\frac{3}{65}"),
        boxed("137 \\frac{1}{2}", "137.5"),
        boxed("2\\sqrt{2}", "\\sqrt{8}"),
        boxed("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt3}"),
        boxed("11 \\sqrt{5} + 11", "11(1+\\sqrt{5})"),
        boxed("3\\sqrt{13}", "3\\sqrt{31}"),
        boxed("18+2\\pi", "2\\pi+18"),
        boxed("-2 + 7i", "7i-2"),
        boxed("x^2+2x+1", "(x+1)^2"),
        boxed("6r^2-4r-24", "2(3r^2-2r-12)"),
        boxed("(a+5)(b+2)", "ab+2a+5b+10"),
        boxed("x^5 - x^4 + x^3 - x^2 + x - 1", "(x-1)(x^4+x^2+1)"),
        boxed("8n^2 + 4n + 1", "8n^2+4n-1"),
        boxed("y = 2x + 3", "y=3+2x"),
        boxed(
            "(-\\infty, 2) \\cup (3, \\infty)",
            "(3,\\infty)\\cup(-\\infty,2)",
        ),
        boxed("\\left(\\frac{3}{5},\\frac{8}{3}\\right]", "(0.6, 8/3]"),
        boxed("[-2,7]", "x \\in [-2, 7)"),
        boxed("\\{1\\pm\\sqrt{5},-2\\}", "-2, 1+\\sqrt5, 1-\\sqrt5"),
        boxed("3, 5, 7", "7, 5, 3"),
        boxed("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)"),
        boxed(
            "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}",
            "\\begin{bmatrix} -1 & 0 \\\\ 0 & -1 \\end{bmatrix}",
        ),
        boxed(
            "\\begin{pmatrix} 16/49 \\\\ 48/49 \\\\ 24/49 \\end{pmatrix}",
            "\\begin{pmatrix} \\frac{16}{49} \\\\ \\frac{48}{49} \\\\ \\frac{24}{49} \\end{pmatrix}",
        ),
        boxed("\\text{(C)}", "C"),
        boxed("\\text{Evelyn}", "\\text{Evelyn}"),
        boxed("50\\%", "0.5"),
        boxed("90^\\circ", "90"),
        boxed("10,\\!080", "10080"),
        boxed("2e-7", "1e-7"),
    ]
}

fn latency_report(items: &[(String, String)], opts: &MathOptions) {
    let mut times: Vec<f64> = Vec::new();
    for _ in 0..200 {
        for (g, r) in items {
            let t = Instant::now();
            black_box(verify(g, r, opts));
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() as f64 - 1.0) * p) as usize];
    println!(
        "math_verify latency over {} single-item calls (one thread): p50 {:.1} us, p99 {:.1} us, max {:.1} us",
        times.len(),
        pct(0.50),
        pct(0.99),
        times[times.len() - 1]
    );
}

fn bench(c: &mut Criterion) {
    let items = mixed_items();
    let opts = MathOptions::default();
    latency_report(&items, &opts);

    let mut g = c.benchmark_group("math_verify");
    g.throughput(Throughput::Elements(items.len() as u64));
    g.bench_function("one_thread", |b| {
        b.iter(|| {
            for (gold, resp) in &items {
                black_box(verify(gold, resp, &opts));
            }
        })
    });
    let many: Vec<(String, String)> = items
        .iter()
        .cycle()
        .take(items.len() * 64)
        .cloned()
        .collect();
    g.throughput(Throughput::Elements(many.len() as u64));
    g.bench_function(
        format!("all_threads_{}", rayon::current_num_threads()),
        |b| b.iter(|| black_box(verify_batch(&many, &opts))),
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
