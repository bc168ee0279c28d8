//! Rollout throughput: generated tokens per second of the tiny model on the CPU, at
//! batch 1 (one prompt, one sample) and 16 prompts × 8 samples, 32 new tokens each
//! (EOS disabled so every sample has exactly 32). Compare with transformers' `generate`
//! on the same checkpoint: `cargo run --bin cove -- export-tiny target/tiny-hf` then
//! `.venv/bin/python scripts/bench_hf_generate.py target/tiny-hf`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::time::Duration;

use cove::model::Message;
use cove::rollout::{SamplingConfig, generate};

const NEW_TOKENS: usize = 32;

fn bench(c: &mut Criterion) {
    let mut policy = cove::tiny::policy(&Default::default(), 0, tch::Device::Cpu).unwrap();
    policy.eos_token_ids.clear();
    let prompts: Vec<Vec<i64>> = (0..16)
        .map(|i| {
            let q = format!("What is {}+{}?", 7 * i + 3, 130 - 11 * i);
            let text = policy
                .apply_chat_template(&[Message::user(&q)], true)
                .unwrap();
            policy.encode(&text).unwrap()
        })
        .collect();
    let mut group = c.benchmark_group("rollout");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    for (name, n_prompts, n) in [("batch1", 1usize, 1usize), ("16x8", 16, 8)] {
        let cfg = SamplingConfig {
            n,
            max_new_tokens: NEW_TOKENS,
            seed: 1,
            ..Default::default()
        };
        group.throughput(Throughput::Elements((n_prompts * n * NEW_TOKENS) as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let out = generate(&policy, &prompts[..n_prompts], &cfg).unwrap();
                assert_eq!(
                    out.iter().map(|s| s.token_ids.len()).sum::<usize>(),
                    n_prompts * n * NEW_TOKENS
                );
                out
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
