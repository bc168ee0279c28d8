//! Rollout throughput: generated tokens per second on the CPU, 32 new tokens per sample
//! (EOS disabled so every sample has exactly 32), temperature 1, no top-p / top-k:
//! - `rollout/batch1`, `rollout/16x8`: the tiny model, one prompt × one sample and
//!   16 prompts × 8 samples;
//! - `rollout/smollm2_4x8`: SmolLM2-135M-Instruct (installed by `scripts/setup.sh`),
//!   4 prompts × 8 samples, f32.
//!
//! transformers' `generate` on the same prompts and settings:
//! `cargo run --bin cove -- export-tiny target/tiny-hf` then
//! `.venv/bin/python scripts/bench_hf_generate.py target/tiny-hf`, and
//! `.venv/bin/python scripts/bench_hf_generate.py .cache/cove/models/smollm2-135m-instruct --cases 4x8`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::time::Duration;

use cove::model::named::{DEFAULT_MODEL, ModelSource, resolve};
use cove::model::{Dtype, Message, Policy};
use cove::rollout::{SamplingConfig, generate};

const NEW_TOKENS: usize = 32;

/// The bench's prompts (the same as `scripts/bench_hf_generate.py`'s), chat-templated.
fn prompts(policy: &Policy, count: usize) -> Vec<Vec<i64>> {
    (0..count as i64)
        .map(|i| {
            let q = format!("What is {}+{}?", 7 * i + 3, 130 - 11 * i);
            let text = policy
                .apply_chat_template(&[Message::user(&q)], true)
                .unwrap();
            policy.encode(&text).unwrap()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut policy = cove::model::tiny::policy(&Default::default(), 0, tch::Device::Cpu).unwrap();
    policy.eos_token_ids.clear();
    let mut group = c.benchmark_group("rollout");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    run_cases(&mut group, &policy, &[("batch1", 1, 1), ("16x8", 16, 8)]);
    match resolve(DEFAULT_MODEL) {
        Ok(ModelSource::Folder(dir)) => {
            let mut smol = Policy::from_hf_dir(&dir, Dtype::F32, tch::Device::Cpu).unwrap();
            smol.eos_token_ids.clear();
            run_cases(&mut group, &smol, &[("smollm2_4x8", 4, 8)]);
        }
        other => eprintln!("rollout/smollm2_4x8 skipped: {other:?}"),
    }
    group.finish();
}

/// Benchmarks `generate` for each `(name, prompts, samples per prompt)`.
fn run_cases(
    group: &mut criterion::BenchmarkGroup<criterion::measurement::WallTime>,
    policy: &Policy,
    cases: &[(&str, usize, usize)],
) {
    let prompts = prompts(policy, 16);
    for &(name, n_prompts, n) in cases {
        let cfg = SamplingConfig {
            n,
            max_new_tokens: NEW_TOKENS,
            seed: 1,
            ..Default::default()
        };
        group.throughput(Throughput::Elements((n_prompts * n * NEW_TOKENS) as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let out = generate(policy, &prompts[..n_prompts], &cfg).unwrap();
                assert_eq!(
                    out.iter().map(|s| s.token_ids.len()).sum::<usize>(),
                    n_prompts * n * NEW_TOKENS
                );
                out
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
