//! Packed micro-batches, shared group prompts, reused rollout log-probs and mini-batch
//! selection from the training forward: each changes speed and memory, never the
//! numbers.

use crate::learner_common::{small_config, trainer};
use cove::config::TrainConfig;
use cove::loss::{ControlConfig, SelectionLogp};
use cove::model::{
    LogprobOptions, PackedItem, Policy, ResponseLogprobs, packed_response_logprobs,
    response_logprobs,
};
use cove::rollout::{SamplingConfig, generate};
use tch::{Kind, Tensor};

fn tiny() -> Policy {
    cove::model::tiny::policy(&Default::default(), 0, tch::Device::Cpu).unwrap()
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// Three prompts with responses of lengths 1, 7 / 12 / 4, 0 (an empty response too).
fn items(p: &Policy) -> (Vec<Vec<i64>>, Vec<Vec<Vec<i64>>>) {
    let enc = |s: &str| p.encode(s).unwrap();
    let prompts = vec![enc("Q: 12+7?"), enc("Write a number"), enc("Hi")];
    let responses = vec![
        vec![enc("1"), enc(" 19, final")],
        vec![enc("31415926535 8")],
        vec![enc("abcd"), vec![]],
    ];
    (prompts, responses)
}

/// Log-probs under the padded forward (the reference) and the packed one, with a
/// gradient of a fixed random functional of both log-probs and entropies.
fn run(
    p: &Policy,
    packed: Option<bool>,
    prompts: &[Vec<i64>],
    responses: &[Vec<Vec<i64>>],
) -> (Values, Vec<Tensor>) {
    let opts = LogprobOptions {
        entropy_grad: true,
        ..LogprobOptions::default()
    };
    run_with(p, packed, prompts, responses, &opts)
}

/// The values of a forward, kept after its backward consumed it.
struct Values {
    logprobs: Tensor,
    entropies: Tensor,
    mask: Tensor,
}

/// [`run`] with explicit options.
fn run_with(
    p: &Policy,
    packed: Option<bool>,
    prompts: &[Vec<i64>],
    responses: &[Vec<Vec<i64>>],
    opts: &LogprobOptions,
) -> (Values, Vec<Tensor>) {
    let opts = *opts;
    let out: ResponseLogprobs = match packed {
        None => {
            let pairs: Vec<(&[i64], &[i64])> = prompts
                .iter()
                .zip(responses)
                .flat_map(|(pr, rs)| rs.iter().map(move |r| (pr.as_slice(), r.as_slice())))
                .collect();
            response_logprobs(p.model.as_ref(), &pairs, p.pad_token_id, &opts).unwrap()
        }
        Some(share) => {
            let items: Vec<PackedItem> = prompts
                .iter()
                .zip(responses)
                .map(|(pr, rs)| PackedItem {
                    prompt: pr,
                    responses: rs.iter().map(Vec::as_slice).collect(),
                })
                .collect();
            packed_response_logprobs(p.model.as_ref(), &items, share, &opts).unwrap()
        }
    };
    let _lock = crate::global_rng_lock();
    tch::manual_seed(5);
    let w1 = Tensor::randn(out.logprobs.size(), (Kind::Float, tch::Device::Cpu));
    let w2 = Tensor::randn(out.logprobs.size(), (Kind::Float, tch::Device::Cpu));
    let vars = p.model.var_store().trainable_variables();
    for v in &vars {
        let mut g = v.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
    let loss = (&out.logprobs * &w1).sum(Kind::Float) + (&out.entropies * &w2).sum(Kind::Float);
    let values = Values {
        logprobs: out.logprobs.detach(),
        entropies: out.entropies.detach(),
        mask: out.mask.shallow_clone(),
    };
    out.backward(&loss);
    let grads = vars.iter().map(|v| v.grad().copy()).collect();
    (values, grads)
}

#[test]
fn packed_log_probs_entropies_and_gradients_equal_the_padded_ones() {
    let p = tiny();
    let (prompts, responses) = items(&p);
    let (padded, g_padded) = run(&p, None, &prompts, &responses);
    for share in [false, true] {
        let (packed, g_packed) = run(&p, Some(share), &prompts, &responses);
        assert_eq!(packed.mask.size(), padded.mask.size());
        assert_eq!(max_abs(&packed.mask, &padded.mask), 0.0);
        let lp = max_abs(&packed.logprobs, &padded.logprobs);
        let ent = max_abs(&packed.entropies, &padded.entropies);
        assert!(
            lp <= 1e-5 && ent <= 1e-5,
            "share {share}: logp {lp}, entropy {ent}"
        );
        for (a, b) in g_packed.iter().zip(&g_padded) {
            let scale = b.abs().max().double_value(&[]).max(1e-3);
            let d = max_abs(a, b);
            assert!(
                d <= 1e-5 * scale,
                "share {share}: gradient differs by {d} (scale {scale})"
            );
        }
    }
}

#[test]
fn a_length_one_sequence_and_a_prompt_without_responses_pack() {
    let p = tiny();
    let prompt = p.encode("x").unwrap();
    let resp = p.encode("7").unwrap();
    assert_eq!((prompt.len(), resp.len()), (1, 1));
    let opts = LogprobOptions::default();
    let padded = response_logprobs(
        p.model.as_ref(),
        &[(&prompt, &resp), (&prompt, &[])],
        p.pad_token_id,
        &opts,
    )
    .unwrap();
    for share in [false, true] {
        let items = [
            PackedItem {
                prompt: &prompt,
                responses: vec![&resp],
            },
            PackedItem {
                prompt: &prompt,
                responses: vec![&[]],
            },
        ];
        let packed = packed_response_logprobs(p.model.as_ref(), &items, share, &opts).unwrap();
        assert!(max_abs(&packed.logprobs, &padded.logprobs) <= 1e-5);
        assert_eq!(max_abs(&packed.mask, &padded.mask), 0.0);
    }
}

/// The largest gap between the sampler's log-probs of `n` = 4 samples per prompt (up
/// to `max_new_tokens`, seed 9) and the packed training forward's (shared prompts).
pub fn rollout_training_gap(p: &Policy, prompts: &[Vec<i64>], max_new_tokens: usize) -> f64 {
    let cfg = SamplingConfig {
        n: 4,
        max_new_tokens,
        seed: 9,
        ..SamplingConfig::default()
    };
    let samples = generate(p, prompts, &cfg).unwrap();
    let items: Vec<PackedItem> = prompts
        .iter()
        .enumerate()
        .map(|(i, pr)| PackedItem {
            prompt: pr,
            responses: samples[i * 4..i * 4 + 4]
                .iter()
                .map(|s| s.token_ids.as_slice())
                .collect(),
        })
        .collect();
    let _guard = tch::no_grad_guard();
    let out =
        packed_response_logprobs(p.model.as_ref(), &items, true, &Default::default()).unwrap();
    let mut worst: f64 = 0.0;
    for (row, s) in samples.iter().enumerate() {
        for (j, &lp) in s.logprobs.iter().enumerate() {
            let train = out.logprobs.double_value(&[row as i64, j as i64]);
            worst = worst.max((train - lp as f64).abs());
        }
    }
    worst
}

#[test]
fn rollout_log_probs_match_the_training_forward_within_a_bound() {
    // KV-cached decoding (one query at a time) and the packed training forward reduce
    // in different orders; on the tiny model the gap must stay under 2e-5, far below
    // anything a ratio clip of 0.2 could see.
    let p = tiny();
    let prompts: Vec<Vec<i64>> = ["A number:", "Digits please", "7"]
        .iter()
        .map(|s| p.encode(s).unwrap())
        .collect();
    let worst = rollout_training_gap(&p, &prompts, 24);
    eprintln!("tiny rollout vs training log-prob gap: {worst:e}");
    assert!(worst < 2e-5, "rollout vs training log-prob gap {worst}");
}

/// Parameters of a trainer after `cfg.steps` steps and the per-step selection counts
/// and losses.
fn train(cfg: TrainConfig) -> (Vec<Tensor>, Vec<(f64, f64, f64)>) {
    let mut t = trainer(cfg);
    let mut log = Vec::new();
    t.run(|m| {
        log.push((m.selected_frac, m.loss, m.approx_kl));
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    let params = t.named_params();
    (params.into_iter().map(|(_, v)| v).collect(), log)
}

/// Two steps of the small configuration with `control`, one micro-batch per
/// mini-batch. AdamW's eps = 1 makes its update nearly linear in the gradient
/// (`lr * g / (|g| + 1)`), so parameters compare gradients: with the usual eps a
/// gradient of 1e-9 and one of 2e-9 both move a weight by about `lr`, and float
/// reordering alone moves parameters by 2e-5.
fn selecting_config(out: &std::path::Path, control: ControlConfig) -> TrainConfig {
    let mut cfg = small_config(out);
    cfg.steps = 2;
    cfg.optim.lr = 0.05;
    cfg.optim.eps = 1.0;
    cfg.optim.grad_clip = None;
    cfg.micro_batch_size = 16;
    cfg.share_prompt_prefix = false;
    cfg.loss.control = control;
    cfg
}

/// Trains `base` and each variant and requires the same selection, losses and
/// (to float rounding) parameters.
fn assert_same_updates(what: &str, base: TrainConfig, variants: Vec<(&str, TrainConfig)>) {
    let (base_params, base_log) = train(base);
    assert!(base_log.iter().all(|l| l.0 > 0.05), "{what}: {base_log:?}");
    for (name, cfg) in variants {
        let (params, log) = train(cfg);
        for (a, b) in log.iter().zip(&base_log) {
            assert_eq!(
                a.0, b.0,
                "{what}, {name}: selected fraction {log:?} vs {base_log:?}"
            );
            assert!(
                (a.1 - b.1).abs() < 1e-6,
                "{what}, {name}: loss {log:?} vs {base_log:?}"
            );
        }
        let worst = params
            .iter()
            .zip(&base_params)
            .map(|(a, b)| max_abs(a, b))
            .fold(0.0, f64::max);
        assert!(worst < 1e-6, "{what}, {name}: parameters differ by {worst}");
    }
}

#[test]
fn clip_cov_selection_does_not_depend_on_micro_batches_packing_or_sharing() {
    // Mini-batch 2 selects from the current policy: with one micro-batch the selection
    // precedes the backward; with several, earlier micro-batches are corrected.
    let dir = tempfile::tempdir().unwrap();
    let control = ControlConfig::ClipCov {
        ratio: 0.2.into(),
        lb: -100.0,
        ub: 100.0,
    };
    let base = selecting_config(dir.path(), control);
    let variants = vec![
        (
            "4 rows per micro-batch",
            TrainConfig {
                micro_batch_size: 4,
                ..base.clone()
            },
        ),
        (
            "token budget 24, shared prompts",
            TrainConfig {
                max_tokens_per_micro_batch: Some(24),
                share_prompt_prefix: true,
                ..base.clone()
            },
        ),
        (
            "token budget 12 (under the longest sequences)",
            TrainConfig {
                max_tokens_per_micro_batch: Some(12),
                ..base.clone()
            },
        ),
    ];
    assert_same_updates("Clip-Cov", base, variants);
}

#[test]
fn gspo_with_clip_cov_does_not_depend_on_micro_batches() {
    // GSPO's token loss reads its whole sequence's ratio, so the correction pass of the
    // late selection runs selected sequences whole, not up to their last selected token.
    let dir = tempfile::tempdir().unwrap();
    let control = ControlConfig::ClipCov {
        ratio: 0.2.into(),
        lb: -100.0,
        ub: 100.0,
    };
    let mut base = selecting_config(dir.path(), control);
    base.loss.policy = cove::loss::PolicyLoss::Gspo;
    let variants = vec![(
        "4 rows per micro-batch",
        TrainConfig {
            micro_batch_size: 4,
            ..base.clone()
        },
    )];
    assert_same_updates("GSPO + Clip-Cov", base, variants);
}

#[test]
fn kl_cov_selection_does_not_depend_on_micro_batches() {
    // KL-Cov's |logp - old_logp| has gradient ±beta at a difference of float noise, so
    // on a step's first mini-batch (where logp = old_logp in exact arithmetic) its
    // sign follows rounding. Here old log-probs are recomputed with the training
    // pass's own layout (bitwise equal, gradient 0), which isolates the selection.
    let dir = tempfile::tempdir().unwrap();
    let control = ControlConfig::KlCov {
        ratio: 0.2.into(),
        beta: 1.0,
    };
    let base = TrainConfig {
        reuse_rollout_logprobs: false,
        logprob_batch_size: 16,
        ..selecting_config(dir.path(), control)
    };
    let variants = vec![(
        "4 rows per micro-batch",
        TrainConfig {
            micro_batch_size: 4,
            logprob_batch_size: 4,
            ..base.clone()
        },
    )];
    assert_same_updates("KL-Cov", base, variants);
}

#[test]
fn old_log_prob_selection_is_free_and_reports_no_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let control = ControlConfig::KlCov {
        ratio: 0.2.into(),
        beta: 1.0,
    };
    let mut cfg = selecting_config(dir.path(), control);
    cfg.steps = 1;
    cfg.micro_batch_size = 4;
    let mut current = Vec::new();
    trainer(cfg.clone())
        .run(|m| {
            current.push(m.selection_overlap_old);
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    let overlap = current[0].expect("current selection reports its overlap with old");
    assert!((0.0..=1.0).contains(&overlap), "{overlap}");
    cfg.loss.selection_logp = SelectionLogp::Old;
    let mut old = Vec::new();
    trainer(cfg)
        .run(|m| {
            old.push((m.selection_overlap_old, m.selected_frac));
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(old[0].0, None);
    assert!(old[0].1 > 0.1);
}

#[test]
fn reusing_rollout_log_probs_keeps_first_ratios_at_one() {
    // With the rollout's log-probs as the old ones, the first mini-batch's ratios
    // differ from 1 by the rollout/forward gap only: approx_kl (mean of old - new) of
    // a zero-lr step stays under that bound, and equals the recomputed run's to it.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small_config(dir.path());
    cfg.steps = 1;
    cfg.mini_batch_size = 32;
    cfg.micro_batch_size = 32;
    cfg.optim.lr = 0.0;
    let mut kl = Vec::new();
    for reuse in [true, false] {
        cfg.reuse_rollout_logprobs = reuse;
        trainer(cfg.clone())
            .run(|m| {
                kl.push(m.approx_kl);
                std::ops::ControlFlow::Continue(())
            })
            .unwrap();
    }
    assert!(kl[0].abs() < 2e-5, "reused: approx_kl {}", kl[0]);
    assert!(kl[1].abs() < 1e-7, "recomputed: approx_kl {}", kl[1]);
}
