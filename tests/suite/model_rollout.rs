//! Sampling statistics, batched KV-cached generation and the training forward.

use cove::model::{LogprobOptions, Policy, response_logprobs};
use cove::rollout::{FinishReason, SamplingConfig, generate, sample_step};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

const LOGITS: [f32; 6] = [1.0, 0.5, 2.0, -1.0, 0.0, 1.5];

/// Draws `n` tokens from `LOGITS` with `cfg` (one batched call) and returns the counts.
fn counts(cfg: &SamplingConfig, n: i64, seed: u64) -> Vec<f64> {
    let v = LOGITS.len() as i64;
    let logits = Tensor::from_slice(&LOGITS)
        .view([1, v])
        .expand([n, v], true)
        .contiguous();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let u: Vec<f32> = (0..n).map(|_| (1.0 - rng.random::<f64>()) as f32).collect();
    let (tok, lp, ent) = sample_step(&logits, cfg, &Tensor::from_slice(&u));
    let tok = Vec::<i64>::try_from(&tok).unwrap();
    // Returned log-probs / entropy are those of the untruncated tempered softmax.
    let t = if cfg.temperature == 0.0 {
        1.0
    } else {
        cfg.temperature
    };
    let logp = (Tensor::from_slice(&LOGITS) / t).log_softmax(0, Kind::Float);
    let logp = Vec::<f32>::try_from(&logp).unwrap();
    let lp = Vec::<f32>::try_from(&lp).unwrap();
    for (k, &tk) in tok.iter().enumerate() {
        assert!((lp[k] - logp[tk as usize]).abs() < 1e-5);
    }
    let h: f32 = -logp.iter().map(|l| l.exp() * l).sum::<f32>();
    assert!((ent.get(0).double_value(&[]) as f32 - h).abs() < 1e-5);
    let mut c = vec![0.0; v as usize];
    for tk in tok {
        c[tk as usize] += 1.0;
    }
    c
}

/// Pearson chi-square statistic of `counts` against probabilities `p` (cells with
/// p = 0 must be empty).
fn chi2(counts: &[f64], p: &[f64]) -> f64 {
    let n: f64 = counts.iter().sum();
    counts
        .iter()
        .zip(p)
        .map(|(&c, &pi)| {
            if pi == 0.0 {
                assert_eq!(c, 0.0, "a truncated token was drawn");
                0.0
            } else {
                (c - n * pi).powi(2) / (n * pi)
            }
        })
        .sum()
}

fn tempered(t: f64) -> Vec<f64> {
    let z: Vec<f64> = LOGITS.iter().map(|&l| (l as f64 / t).exp()).collect();
    let s: f64 = z.iter().sum();
    z.iter().map(|x| x / s).collect()
}

// Chi-square critical values at p = 0.001.
const CHI2_DF5: f64 = 20.52;
const CHI2_DF1: f64 = 10.83;
const CHI2_DF2: f64 = 13.82;

#[test]
fn sampling_frequencies_match_tempered_softmax() {
    for t in [0.7, 1.0, 1.6] {
        let cfg = SamplingConfig {
            temperature: t,
            ..Default::default()
        };
        let c = counts(&cfg, 40_000, 11);
        let stat = chi2(&c, &tempered(t));
        assert!(stat < CHI2_DF5, "T={t}: chi2 = {stat}");
    }
}

#[test]
fn top_k_keeps_the_k_most_likely() {
    // Order by logit: 2 (2.0), 5 (1.5), 0 (1.0), 1 (0.5), 4, 3.
    let cfg = SamplingConfig {
        top_k: 2,
        ..Default::default()
    };
    let c = counts(&cfg, 20_000, 12);
    let p = tempered(1.0);
    let kept = p[2] + p[5];
    let want: Vec<f64> = (0..6)
        .map(|i| if i == 2 || i == 5 { p[i] / kept } else { 0.0 })
        .collect();
    assert!(chi2(&c, &want) < CHI2_DF1);
}

#[test]
fn top_p_keeps_the_smallest_nucleus() {
    let p = tempered(1.0);
    // p ≈ [.154, .094, .420, .021, .057, .255]: the top two hold 0.674 < 0.7, so the
    // third (token 0) is kept and the rest dropped.
    let cfg = SamplingConfig {
        top_p: 0.7,
        ..Default::default()
    };
    let c = counts(&cfg, 20_000, 13);
    let kept = p[2] + p[5] + p[0];
    let want: Vec<f64> = (0..6)
        .map(|i| {
            if [0, 2, 5].contains(&i) {
                p[i] / kept
            } else {
                0.0
            }
        })
        .collect();
    assert!(chi2(&c, &want) < CHI2_DF2);
    // top-k first, then top-p on the renormalised remainder: of {2, 5}, token 2 holds
    // 0.62 >= 0.6, so token 5 is dropped.
    let cfg = SamplingConfig {
        top_k: 2,
        top_p: 0.6,
        ..Default::default()
    };
    let c = counts(&cfg, 2_000, 14);
    assert_eq!(c[2], 2_000.0);
}

#[test]
fn temperature_zero_is_greedy() {
    let cfg = SamplingConfig {
        temperature: 0.0,
        ..Default::default()
    };
    let c = counts(&cfg, 100, 15);
    assert_eq!(c[2], 100.0);
}

fn tiny() -> Policy {
    cove::model::tiny::policy(&Default::default(), 7, Device::Cpu).unwrap()
}

fn prompts(p: &Policy) -> Vec<Vec<i64>> {
    [
        "What is 12+7?",
        "1+1=",
        "<|im_start|>user\nWhat is 100+250?<|im_end|>\n<|im_start|>assistant\n",
    ]
    .iter()
    .map(|s| p.encode(s).unwrap())
    .collect()
}

#[test]
fn generation_shapes_determinism_and_limits() {
    let p = tiny();
    let prompts = prompts(&p);
    let cfg = SamplingConfig {
        n: 4,
        max_new_tokens: 12,
        seed: 3,
        ..Default::default()
    };
    let a = generate(&p, &prompts, &cfg).unwrap();
    assert_eq!(a.len(), 12);
    for (i, s) in a.iter().enumerate() {
        assert_eq!((s.prompt_index, s.sample_index), (i / 4, i % 4));
        assert!(!s.token_ids.is_empty() && s.token_ids.len() <= 12);
        assert_eq!(s.logprobs.len(), s.token_ids.len());
        assert_eq!(s.entropies.len(), s.token_ids.len());
        assert!(s.logprobs.iter().all(|l| l.is_finite() && *l <= 0.0));
        assert!(
            s.entropies
                .iter()
                .all(|h| *h >= 0.0 && *h <= (99f32).ln() + 1e-4)
        );
        match s.finish_reason {
            FinishReason::Length => assert_eq!(s.token_ids.len(), 12),
            FinishReason::Eos => assert!(p.eos_token_ids.contains(s.token_ids.last().unwrap())),
            other => panic!("{other:?}: no stop strings configured, one turn"),
        }
    }
    assert_eq!(
        a,
        generate(&p, &prompts, &cfg).unwrap(),
        "same seed, same samples"
    );
    let b = generate(
        &p,
        &prompts,
        &SamplingConfig {
            seed: 4,
            ..cfg.clone()
        },
    )
    .unwrap();
    assert_ne!(a, b, "another seed, other samples");
}

#[test]
fn ragged_prompts_decode_like_single_prompts() {
    let p = tiny();
    let prompts = prompts(&p);
    let cfg = SamplingConfig {
        n: 2,
        temperature: 0.0,
        max_new_tokens: 10,
        ..Default::default()
    };
    let batch = generate(&p, &prompts, &cfg).unwrap();
    for (i, prompt) in prompts.iter().enumerate() {
        let single = generate(&p, std::slice::from_ref(prompt), &cfg).unwrap();
        for s in 0..2 {
            let b = &batch[i * 2 + s];
            assert_eq!(b.token_ids, single[s].token_ids, "prompt {i} sample {s}");
            for (x, y) in b.logprobs.iter().zip(&single[s].logprobs) {
                assert!((x - y).abs() < 1e-4);
            }
        }
        // n greedy samples share one prefill and agree.
        assert_eq!(batch[i * 2].token_ids, batch[i * 2 + 1].token_ids);
    }
}

#[test]
fn eos_and_stop_strings_end_samples() {
    let mut p = tiny();
    let prompts = prompts(&p);
    let greedy = SamplingConfig {
        temperature: 0.0,
        max_new_tokens: 8,
        ..Default::default()
    };
    p.eos_token_ids = vec![];
    let free = generate(&p, &prompts[..1], &greedy).unwrap().remove(0);
    assert_eq!(free.finish_reason, FinishReason::Length);
    assert_eq!(free.token_ids.len(), 8);

    // The third greedy token becomes an EOS: the sample stops there, EOS kept.
    p.eos_token_ids = vec![free.token_ids[2]];
    let first = free
        .token_ids
        .iter()
        .position(|t| *t == free.token_ids[2])
        .unwrap();
    let s = generate(&p, &prompts[..1], &greedy).unwrap().remove(0);
    assert_eq!(s.finish_reason, FinishReason::Eos);
    assert_eq!(s.token_ids, free.token_ids[..=first]);

    // A stop string made of the 4th and 5th generated characters (special tokens have no
    // text, so pick from the decoded text).
    p.eos_token_ids = vec![];
    let text = free.text.clone();
    if text.chars().count() >= 5 {
        let stop: String = text.chars().skip(3).take(2).collect();
        let cfg = SamplingConfig {
            stop: vec![stop.clone()],
            ..greedy.clone()
        };
        let s = generate(&p, &prompts[..1], &cfg).unwrap().remove(0);
        assert_eq!(s.finish_reason, FinishReason::Stop);
        assert!(!s.text.contains(&stop));
        assert!(text.starts_with(&s.text));
        // It stopped at the first token that completed the stop string.
        let n = s.token_ids.len();
        assert_eq!(s.token_ids, free.token_ids[..n]);
        assert!(p.decode(&s.token_ids).unwrap().contains(&stop));
        assert!(!p.decode(&s.token_ids[..n - 1]).unwrap().contains(&stop));
    }
}

#[test]
fn bad_sampling_config_and_prompts_are_errors() {
    let p = tiny();
    let ok = vec![p.encode("hi").unwrap()];
    for (cfg, field) in [
        (
            SamplingConfig {
                n: 0,
                ..Default::default()
            },
            "`n`",
        ),
        (
            SamplingConfig {
                top_p: 0.0,
                ..Default::default()
            },
            "`top_p`",
        ),
        (
            SamplingConfig {
                temperature: -1.0,
                ..Default::default()
            },
            "`temperature`",
        ),
        (
            SamplingConfig {
                stop: vec![String::new()],
                ..Default::default()
            },
            "`stop`",
        ),
    ] {
        let e = generate(&p, &ok, &cfg).unwrap_err().to_string();
        assert!(e.contains(field), "{e}");
    }
    let e = generate(&p, &[vec![]], &SamplingConfig::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("prompt 0") && e.contains("empty"), "{e}");
    let e = generate(&p, &[vec![5000]], &SamplingConfig::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("5000"), "{e}");
}

#[test]
fn training_forward_matches_rollout_logprobs() {
    let p = tiny();
    let prompts = prompts(&p);
    let cfg = SamplingConfig {
        n: 2,
        temperature: 0.8,
        max_new_tokens: 10,
        seed: 9,
        ..Default::default()
    };
    let samples = generate(&p, &prompts, &cfg).unwrap();
    let pairs: Vec<(&[i64], &[i64])> = samples
        .iter()
        .map(|s| (prompts[s.prompt_index].as_slice(), s.token_ids.as_slice()))
        .collect();
    for budget in [cove::model::LOGIT_BUDGET, 3 * 99] {
        let opts = LogprobOptions {
            temperature: 0.8,
            entropy_grad: true,
            logit_budget: budget,
            ..LogprobOptions::default()
        };
        let out = response_logprobs(p.model.as_ref(), &pairs, p.pad_token_id, &opts).unwrap();
        let r = samples.iter().map(|s| s.token_ids.len()).max().unwrap() as i64;
        assert_eq!(out.logprobs.size(), [samples.len() as i64, r]);
        assert_eq!(out.mask.size(), out.logprobs.size());
        for (b, s) in samples.iter().enumerate() {
            let n = s.token_ids.len();
            let lp = Vec::<f32>::try_from(out.logprobs.get(b as i64)).unwrap();
            let ent = Vec::<f32>::try_from(out.entropies.get(b as i64)).unwrap();
            let mask = Vec::<f32>::try_from(out.mask.get(b as i64)).unwrap();
            for j in 0..r as usize {
                if j < n {
                    assert_eq!(mask[j], 1.0);
                    assert!((lp[j] - s.logprobs[j]).abs() < 1e-4, "sample {b} token {j}");
                    assert!(
                        (ent[j] - s.entropies[j]).abs() < 1e-4,
                        "sample {b} token {j}"
                    );
                } else {
                    assert_eq!((mask[j], lp[j], ent[j]), (0.0, 0.0, 0.0));
                }
            }
        }
        // Gradients reach the parameters through both log-probs and entropies.
        let loss = (&out.logprobs * &out.mask).sum(Kind::Float) + out.entropies.sum(Kind::Float);
        loss.backward();
        let vars = p.model.var_store().trainable_variables();
        assert!(!vars.is_empty());
        let total: f64 = vars
            .iter()
            .map(|v| v.grad().abs().sum(Kind::Double).double_value(&[]))
            .sum();
        assert!(total > 0.0 && total.is_finite());
        for mut v in vars {
            v.zero_grad();
        }
    }
    // Without entropy_grad the entropies are detached.
    let out = response_logprobs(
        p.model.as_ref(),
        &pairs,
        p.pad_token_id,
        &LogprobOptions::default(),
    )
    .unwrap();
    assert!(out.logprobs.requires_grad());
    assert!(!out.entropies.requires_grad());
}

#[test]
fn training_forward_rejects_bad_input() {
    let p = tiny();
    let e = response_logprobs(
        p.model.as_ref(),
        &[(&[], &[3])],
        0,
        &LogprobOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("prompt 0 is empty"));
    let opts = LogprobOptions {
        temperature: 0.0,
        ..Default::default()
    };
    assert!(response_logprobs(p.model.as_ref(), &[(&[3], &[3])], 0, &opts).is_err());
    let out = response_logprobs(
        p.model.as_ref(),
        &[(&[3, 4], &[])],
        0,
        &LogprobOptions::default(),
    )
    .unwrap();
    assert_eq!(out.mask.size(), [1, 0]);
}

#[test]
fn tiny_tokenizer_round_trips_ascii_and_specials() {
    let p = tiny();
    let text = "<|im_start|>user\nWhat is 12+7? ~{}|<|im_end|>\n";
    let ids = p.encode(text).unwrap();
    assert_eq!(ids[0], cove::model::tiny::IM_START);
    assert!(ids.contains(&cove::model::tiny::IM_END));
    assert!(
        ids.iter()
            .all(|&i| (0..cove::model::tiny::VOCAB_SIZE).contains(&i))
    );
    assert_eq!(ids.len(), 1 + "user\nWhat is 12+7? ~{}|".len() + 1 + 1);
    assert_eq!(p.decode(&ids).unwrap(), "user\nWhat is 12+7? ~{}|\n");
    let params: i64 = p
        .model
        .var_store()
        .trainable_variables()
        .iter()
        .map(|v| v.numel() as i64)
        .sum();
    assert!(
        (100_000..1_000_000).contains(&params),
        "{params} parameters"
    );
}
