//! The memory switches of the training forward and the optimizer: activation
//! checkpointing and recomputed logit chunks give the same values and gradients as the
//! plain forward, recomputed chunks bound the memory of the LM head (measured in a
//! child process, whose peak resident memory is its own), and bf16-mixed training
//! keeps f32 master weights that checkpoints carry, so resume is exact.

use crate::learner_common::{small_config, trainer};
use cove::model::qwen2::Qwen2;
use cove::model::weights::RandomInit;
use cove::model::{CausalLm, LogprobOptions, PackedItem, packed_response_logprobs};
use cove::optim::{AdamW, OptimConfig, Precision};
use std::ops::ControlFlow;
use tch::{Device, Kind, Tensor, nn};

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// Log-probs, entropies and every trainable gradient of a fixed random functional of
/// both, for the packed forward of `items` under `opts`.
fn values_and_grads(
    model: &dyn CausalLm,
    items: &[PackedItem],
    opts: &LogprobOptions,
) -> (Tensor, Tensor, Vec<Tensor>) {
    // Frozen variables (LoRA's base) stay in the var store's trainable list.
    let vars: Vec<Tensor> = model
        .var_store()
        .trainable_variables()
        .into_iter()
        .filter(Tensor::requires_grad)
        .collect();
    for v in &vars {
        let mut g = v.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
    // The generator is seeded before the forward: adapter dropout draws from it.
    let _lock = crate::global_rng_lock();
    tch::manual_seed(11);
    let out = packed_response_logprobs(model, items, true, opts).unwrap();
    let size = out.logprobs.size();
    let w1 = Tensor::randn(&size, (Kind::Float, Device::Cpu));
    let w2 = Tensor::randn(&size, (Kind::Float, Device::Cpu));
    let loss = (&out.logprobs * &w1).sum(Kind::Float) + (&out.entropies * &w2).sum(Kind::Float);
    let (lp, ent) = (out.logprobs.detach(), out.entropies.detach());
    out.backward(&loss);
    let grads = vars
        .iter()
        .map(|v| {
            let g = v.grad();
            assert!(g.defined(), "a trainable variable got no gradient");
            g.copy()
        })
        .collect();
    (lp, ent, grads)
}

/// Two prompts' ids and responses: three to the first, one (and an empty one) to the
/// second.
fn tiny_items(p: &cove::model::Policy) -> (Vec<i64>, Vec<i64>, Vec<Vec<i64>>) {
    let enc = |s: &str| p.encode(s).unwrap();
    (
        enc("What is 2+3?"),
        enc("Sum:"),
        vec![enc("5, since 2+3=5"), enc("6"), enc("it is 5")],
    )
}

/// The packed items of [`tiny_items`].
fn packed<'a>(a: &'a [i64], b: &'a [i64], resp: &'a [Vec<i64>]) -> [PackedItem<'a>; 2] {
    [
        PackedItem {
            prompt: a,
            responses: resp.iter().map(Vec::as_slice).collect(),
        },
        PackedItem {
            prompt: b,
            responses: vec![&resp[1], &[]],
        },
    ]
}

#[test]
fn checkpointing_and_recomputed_logits_give_the_plain_values_and_gradients() {
    let p = cove::model::tiny::policy(&Default::default(), 4, Device::Cpu).unwrap();
    let (a, b, resp) = tiny_items(&p);
    let items = packed(&a, &b, &resp);
    for entropy_grad in [false, true] {
        let plain = LogprobOptions {
            entropy_grad,
            // Several chunks per forward, so the recomputation is chunked too.
            logit_budget: 5 * p.model.vocab_size(),
            ..LogprobOptions::default()
        };
        let (lp0, ent0, g0) = values_and_grads(p.model.as_ref(), &items, &plain);
        assert!(g0.iter().any(|g| g.abs().max().double_value(&[]) > 0.0));
        for (checkpointing, recompute) in [(true, false), (false, true), (true, true)] {
            let opts = LogprobOptions {
                activation_checkpointing: checkpointing,
                recompute_logits: recompute,
                ..plain
            };
            let (lp, ent, g) = values_and_grads(p.model.as_ref(), &items, &opts);
            let what = format!(
                "checkpointing {checkpointing}, recompute {recompute}, entropy grad {entropy_grad}"
            );
            assert!(lp.equal(&lp0) && ent.equal(&ent0), "{what}: values differ");
            for (x, y) in g.iter().zip(&g0) {
                let scale = y.abs().max().double_value(&[]).max(1e-12);
                let d = max_abs(x, y);
                assert!(
                    d <= 1e-6 * scale,
                    "{what}: gradient differs by {d} (scale {scale})"
                );
            }
        }
    }
}

#[test]
fn checkpointing_recomputes_the_same_lora_dropout_masks() {
    let mut p = cove::model::tiny::policy(&Default::default(), 4, Device::Cpu).unwrap();
    let lora = cove::model::lora::LoraConfig {
        rank: 4,
        dropout: 0.3,
        ..Default::default()
    };
    p.model.attach_lora(&lora, "tiny").unwrap();
    {
        // Non-zero B, so the adapters change the output and A gets a gradient.
        let _no_grad = tch::no_grad_guard();
        for (name, t) in p.model.var_store().variables() {
            if name.ends_with("lora_B.weight") {
                let n = t.numel() as i64;
                let v = (Tensor::arange(n, (Kind::Float, Device::Cpu)) * 0.37).sin() * 0.05;
                t.shallow_clone().copy_(&v.view(t.size().as_slice()));
            }
        }
    }
    let (a, b, resp) = tiny_items(&p);
    let items = packed(&a, &b, &resp);
    let plain = LogprobOptions::default();
    let (lp_off, _, _) = values_and_grads(p.model.as_ref(), &items, &plain);
    let _train = p.model.train_switch().on();
    let (lp0, ent0, g0) = values_and_grads(p.model.as_ref(), &items, &plain);
    assert!(max_abs(&lp0, &lp_off) > 1e-4, "dropout is active");
    let checkpointed = LogprobOptions {
        activation_checkpointing: true,
        ..plain
    };
    let (lp, ent, g) = values_and_grads(p.model.as_ref(), &items, &checkpointed);
    assert!(lp.equal(&lp0) && ent.equal(&ent0), "values differ");
    assert_eq!(g.len(), g0.len());
    for (x, y) in g.iter().zip(&g0) {
        let scale = y.abs().max().double_value(&[]).max(1e-12);
        let d = max_abs(x, y);
        assert!(d <= 1e-6 * scale, "gradient differs by {d} (scale {scale})");
    }
}

/// A one-layer model with a large vocabulary (2¹⁷ tokens, width 32): one
/// full-vocabulary f32 tensor over 512 response tokens is 256 MiB.
fn wide_vocab_model() -> Qwen2 {
    let mut cfg = cove::model::tiny::TinyConfig {
        hidden_size: 32,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        intermediate_size: 64,
        max_position_embeddings: 1024,
    }
    .to_qwen2();
    cfg.vocab_size = 1 << 17;
    Qwen2::new(
        &cfg,
        &mut RandomInit::new(3, 0.02),
        Kind::Float,
        Device::Cpu,
    )
    .unwrap()
}

const PEAK_CHILD_ENV: &str = "COVE_PEAK_MEMORY_CHILD";

/// The child: forward and backward of 512 response tokens under the wide vocabulary,
/// printing the growth of the peak resident set over them (reset first through
/// `/proc/self/clear_refs`).
#[test]
fn peak_memory_child() {
    let Ok(spec) = std::env::var(PEAK_CHILD_ENV) else {
        return;
    };
    let (mode, tokens) = spec.split_once(':').unwrap();
    let model = wide_vocab_model();
    let prompt: Vec<i64> = (1..9).collect();
    let response: Vec<i64> = (0..tokens.parse::<i64>().unwrap())
        .map(|i| (i * 7919) % (1 << 17))
        .collect();
    let items = [PackedItem {
        prompt: &prompt,
        responses: vec![&response],
    }];
    let opts = LogprobOptions {
        entropy_grad: true,
        recompute_logits: mode == "recompute",
        ..LogprobOptions::default()
    };
    // `VmHWM` (peak since the reset) or `VmRSS` (now), bytes.
    let status_bytes = |field: &str| -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 1024
    };
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status_bytes("VmRSS:");
    let out = packed_response_logprobs(&model, &items, true, &opts).unwrap();
    let loss = out.logprobs.sum(Kind::Float) + out.entropies.sum(Kind::Float);
    out.backward(&loss);
    println!(
        "PEAK_GROWTH_BYTES={}",
        status_bytes("VmHWM:").saturating_sub(before)
    );
}

/// The child's peak growth for `mode` (`plain` or `recompute`) over `tokens` response
/// tokens. Large blocks are mapped and unmapped per allocation (a fixed glibc mmap
/// threshold), so the resident peak follows the live tensors rather than what glibc's
/// heap keeps after a free.
fn peak_growth(mode: &str, tokens: usize) -> u64 {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "learner_memory::peak_memory_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PEAK_CHILD_ENV, format!("{mode}:{tokens}"))
        .env("MALLOC_MMAP_THRESHOLD_", "1048576")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {text}");
    // libtest may print the test's name on the same line.
    text.split("PEAK_GROWTH_BYTES=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no figure in the child's output: {text}"))
        .parse()
        .unwrap()
}

#[test]
fn recomputed_logit_chunks_bound_the_peak_memory_of_the_lm_head() {
    const MIB: u64 = 1 << 20;
    let plain = peak_growth("plain", 512);
    let chunked = peak_growth("recompute", 512);
    let chunked_long = peak_growth("recompute", 2048);
    // Plain keeps each chunk's log-softmax and its exp (entropy grad) for the backward:
    // two full-vocabulary f32 tensors of 256 MiB.
    assert!(plain > 400 * MIB, "plain grew by {} MiB", plain / MIB);
    // Chunks of 2^22 logits are 16 MiB; about ten live at once in the backward. Four
    // times the tokens must not grow it (a full-vocabulary tensor would be 1 GiB).
    assert!(chunked < 192 * MIB, "chunked grew by {} MiB", chunked / MIB);
    assert!(
        chunked_long < 192 * MIB,
        "chunked over 2048 tokens grew by {} MiB",
        chunked_long / MIB
    );
}

#[test]
fn bf16_mixed_keeps_f32_masters_that_move_below_bf16_resolution() {
    let vs = nn::VarStore::new(Device::Cpu);
    let w = vs.root().var("w", &[4], nn::Init::Const(1.0));
    let cfg = OptimConfig {
        lr: 1e-4,
        weight_decay: 0.0,
        grad_clip: None,
        ..OptimConfig::default()
    };
    let mut opt = AdamW::with_f32_masters(&vs, cfg);
    cove::optim::cast_variables(&vs, Precision::Bf16Mixed.compute_kind());
    assert_eq!(w.kind(), Kind::BFloat16);
    for _ in 0..3 {
        // d/dw of sum(w) = 1: Adam moves each weight by about lr = 1e-4 per step,
        // far below bf16's spacing of 2^-7 near 1.
        w.sum(Kind::Float).backward();
        opt.accumulate_grads();
        opt.step(1e-4);
        opt.zero_grad();
    }
    let masters = opt.master_weights().unwrap();
    let master = &masters[0].1;
    assert_eq!(master.kind(), Kind::Float);
    let moved = 1.0 - master.double_value(&[0]);
    assert!((moved - 3e-4).abs() < 1e-6, "master moved by {moved}");
    assert_eq!(
        w.to_kind(Kind::Float).double_value(&[0]),
        1.0,
        "bf16 weight rounds back"
    );
}

#[test]
fn bf16_mixed_training_resumes_exactly_from_its_master_weights() {
    let config = |out: &std::path::Path| {
        let mut cfg = small_config(out);
        cfg.steps = 4;
        cfg.checkpoint.every = 2;
        cfg.checkpoint.keep = 10;
        cfg.precision = Precision::Bf16Mixed;
        cfg.activation_checkpointing = true;
        cfg.loss.control = cove::loss::ControlConfig::KlCov {
            ratio: 0.02.into(),
            beta: 1.0,
        };
        cfg
    };
    let halted = tempfile::tempdir().unwrap();
    let mut first = trainer(config(halted.path()));
    first
        .run(|m| {
            if m.step == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(first.state().step, 2);
    let kinds: Vec<Kind> = first
        .policy()
        .model
        .var_store()
        .variables()
        .values()
        .map(Tensor::kind)
        .collect();
    assert!(
        kinds.iter().all(|k| *k == Kind::BFloat16),
        "the model computes in bf16"
    );
    assert!(
        first
            .named_params()
            .iter()
            .all(|(_, t)| t.kind() == Kind::Float)
    );
    drop(first);
    let mut resumed = trainer(config(halted.path()));
    assert_eq!(resumed.resume().unwrap(), Some(2));
    resumed.run(|_| ControlFlow::Continue(())).unwrap();

    let clean = tempfile::tempdir().unwrap();
    let mut straight = trainer(config(clean.path()));
    straight.run(|_| ControlFlow::Continue(())).unwrap();
    for ((na, a), (_, b)) in resumed.named_params().iter().zip(&straight.named_params()) {
        assert!(a.equal(b), "master weight {na} differs after resume");
    }
    let sorted = |t: &cove::trainer::Trainer<crate::learner_common::Digits>| {
        let mut v: Vec<(String, Tensor)> = t
            .policy()
            .model
            .var_store()
            .variables()
            .into_iter()
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    for ((na, a), (_, b)) in sorted(&resumed).iter().zip(&sorted(&straight)) {
        assert!(a.equal(b), "bf16 weight {na} differs after resume");
    }
}
