//! LoRA: the first forward equals the base model's and only adapters train; PEFT loads
//! a Cove adapter onto the base model and reproduces Cove's logits; a LoRA run killed
//! and resumed ends bit-identical to an uninterrupted one; `cove merge-lora` writes a
//! Hugging Face folder with the adapted model's logits; the `[model.lora]` section.

use crate::learner_common::{Digits, dataset, small_config};
use crate::test_util::{IDS, logits, max_diff};
use cove::checkpoint::{self, TrainState};
use cove::dist::Launch;
use cove::model::ModelSpec;
use cove::model::lora::{ADAPTER_CONFIG, ADAPTER_WEIGHTS, PEFT_PREFIX};
use cove::model::{CausalLm, Dtype, LoraConfig, Policy};
use cove::trainer::Trainer;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tiny() -> Policy {
    cove::model::tiny::policy(&Default::default(), 0, Device::Cpu).unwrap()
}

fn lora(dropout: f64) -> LoraConfig {
    LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout,
        ..LoraConfig::default()
    }
}

/// The tiny policy with adapters attached (base named `base`).
fn adapted(config: &LoraConfig, base: &str) -> Policy {
    let mut p = tiny();
    p.model.attach_lora(config, base).unwrap();
    p
}

/// Sets every B to fixed non-zero values (as training would), so the adapters matter.
fn set_b(model: &dyn CausalLm) {
    let _guard = tch::no_grad_guard();
    for (name, t) in model.var_store().variables() {
        if name.ends_with("lora_B.weight") {
            let n = t.numel() as i64;
            let v = (Tensor::arange(n, (Kind::Float, Device::Cpu)) * 0.37 + name.len() as f64)
                .sin()
                * 0.05;
            t.shallow_clone().copy_(&v.view(t.size().as_slice()));
        }
    }
}

fn adapter_tensors(model: &dyn CausalLm) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = model
        .var_store()
        .variables()
        .into_iter()
        .filter(|(n, _)| n.starts_with(PEFT_PREFIX))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Writes the model's adapter as a checkpoint folder (as a LoRA run's trainer does).
fn save_adapter_checkpoint(model: &dyn CausalLm, dir: &Path) -> PathBuf {
    let state = TrainState {
        step: 1,
        data_cursor: 0,
        seed: 0,
        optimizer_step: 1,
        control_strength: 0.0,
    };
    let info = model.lora().unwrap();
    checkpoint::save_adapter(
        dir,
        &adapter_tensors(model),
        &info.peft_config(),
        &[],
        &state,
    )
    .unwrap()
}

/// The tiny policy saved as a Hugging Face folder `dir/base`, then adapted (rank 4,
/// `dropout`, B set) and its adapter saved as a checkpoint under `dir/checkpoints`:
/// the adapted policy, the base folder and the checkpoint folder.
fn saved_adapter(dir: &Path, dropout: f64) -> (Policy, PathBuf, PathBuf) {
    let base_dir = dir.join("base");
    tiny().save_pretrained(&base_dir).unwrap();
    let policy = adapted(&lora(dropout), base_dir.to_str().unwrap());
    set_b(policy.model.as_ref());
    let ckpt = save_adapter_checkpoint(policy.model.as_ref(), &dir.join("checkpoints"));
    (policy, base_dir, ckpt)
}

#[test]
fn lora_first_forward_equals_base_and_only_adapters_train() {
    let base = tiny();
    let policy = adapted(&lora(0.5), "tiny");
    assert!(
        logits(base.model.as_ref()).equal(&logits(policy.model.as_ref())),
        "B = 0: the adapted model's first forward is the base model's, bitwise"
    );
    let trainable: Vec<String> = policy
        .model
        .var_store()
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .map(|(n, _)| n)
        .collect();
    // 2 layers x 7 projections x (A, B).
    assert_eq!(trainable.len(), 28, "{trainable:?}");
    for n in &trainable {
        assert!(
            n.starts_with("base_model.model.model.layers.")
                && (n.ends_with(".lora_A.weight") || n.ends_with(".lora_B.weight")),
            "{n}"
        );
    }
    let a = policy
        .model
        .var_store()
        .variables()
        .remove("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")
        .unwrap();
    assert_eq!(a.size(), [4, 128]);
    let bound = 1.0 / 128f64.sqrt();
    assert!(a.abs().max().double_value(&[]) < bound && a.std(true).double_value(&[]) > 0.0);
    // The optimizer holds the adapters' moments only.
    let out = tempfile::tempdir().unwrap();
    let trainer = Trainer::new(small_config(out.path()), policy, Digits, dataset()).unwrap();
    let optim = checkpoint_optimizer_names(&trainer);
    assert_eq!(optim.len(), 56);
    assert!(optim.iter().all(|n| n.contains(".lora_")), "{optim:?}");

    // Dropout: off outside the training forward, on inside it.
    let policy = trainer.into_policy();
    set_b(policy.model.as_ref());
    let (off1, off2) = (logits(policy.model.as_ref()), logits(policy.model.as_ref()));
    assert!(off1.equal(&off2));
    assert!(max_diff(&off1, &logits(base.model.as_ref())) > 1e-3);
    let on = {
        // Dropout draws from (and seeds) libtorch's global generator.
        let _rng = crate::global_rng_lock();
        let _train = policy.model.train_switch().on();
        logits(policy.model.as_ref())
    };
    assert!(
        max_diff(&on, &off1) > 1e-4,
        "dropout acts in the training forward"
    );
    assert!(
        logits(policy.model.as_ref()).equal(&off1),
        "and stops after it"
    );
}

/// The optimizer's tensor names, as the trainer's checkpoint lists them (and checks
/// that the checkpoint holds the adapter in PEFT's layout, no base weights).
fn checkpoint_optimizer_names(trainer: &Trainer<Digits>) -> Vec<String> {
    let path = trainer.save_checkpoint().unwrap();
    let (_, model, optim) = checkpoint::load(&path).unwrap();
    assert!(path.join(ADAPTER_CONFIG).is_file() && path.join(ADAPTER_WEIGHTS).is_file());
    assert!(
        !path.join("model.safetensors").exists(),
        "no frozen base weights"
    );
    assert_eq!(model.len(), 28);
    optim.into_iter().map(|(n, _)| n).collect()
}

#[test]
fn peft_loads_a_cove_adapter_with_coves_logits() {
    let dir = tempfile::tempdir().unwrap();
    let (policy, base_dir, ckpt) = saved_adapter(dir.path(), 0.1);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ckpt.join(ADAPTER_CONFIG)).unwrap()).unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["r"], 4);
    assert_eq!(
        config["base_model_name_or_path"],
        base_dir.to_str().unwrap()
    );
    let out = dir.path().join("peft_logits.safetensors");
    let script = r#"
import sys, torch, transformers, peft, safetensors.torch
base = transformers.AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)
model = peft.PeftModel.from_pretrained(base, sys.argv[2])
model.eval()
assert isinstance(model.peft_config["default"], peft.LoraConfig)
ids = torch.tensor([[int(t) for t in sys.argv[4].split(",")]])
with torch.no_grad():
    logits = model(input_ids=ids).logits[0]
safetensors.torch.save_file({"logits": logits.contiguous()}, sys.argv[3])
"#;
    let ids: Vec<String> = IDS.iter().map(i64::to_string).collect();
    let result = std::process::Command::new(root().join(".venv/bin/python"))
        .args(["-c", script])
        .arg(&base_dir)
        .arg(&ckpt)
        .arg(&out)
        .arg(ids.join(","))
        .output()
        .expect("run .venv/bin/python (scripts/setup.sh installs transformers and peft)");
    assert!(
        result.status.success(),
        "PEFT failed: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    let peft = Tensor::read_safetensors(&out).unwrap().remove(0).1;
    let cove = logits(policy.model.as_ref());
    let d = max_diff(&peft, &cove);
    println!("PEFT vs Cove: max |Δlogit| = {d:e}");
    assert!(d <= 1e-4, "PEFT's logits differ from Cove's by {d}");
    assert!(max_diff(&peft, &logits(tiny().model.as_ref())) > 1e-3);
}

const CHILD_ENV: &str = "COVE_LORA_CRASH_CHILD";
const STEPS: u64 = 4;

fn resume_config(out: &Path) -> cove::config::TrainConfig {
    let mut cfg = small_config(out);
    cfg.steps = STEPS;
    cfg.checkpoint.every = 2;
    cfg.checkpoint.keep = 10;
    cfg.optim.lr = 1e-2;
    cfg
}

fn lora_trainer(out: &Path) -> Trainer<Digits> {
    let policy = adapted(&lora(0.1), "tiny");
    Trainer::new(resume_config(out), policy, Digits, dataset()).unwrap()
}

#[test]
fn lora_killed_run_resumes_bit_identical() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let mut t = lora_trainer(Path::new(&dir));
        t.run(|m| {
            if m.step == 3 {
                std::process::abort();
            }
            ControlFlow::Continue(())
        })
        .unwrap();
        unreachable!("the child aborts at step 3");
    }
    // Dropout draws from libtorch's global generator, which the trainer seeds per step.
    let _rng = crate::global_rng_lock();
    let crashed = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "lora::lora_killed_run_resumes_bit_identical",
            "--exact",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, crashed.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child must die");
    let ckpts = checkpoint::list(&crashed.path().join("checkpoints")).unwrap();
    assert_eq!(ckpts.iter().map(|c| c.0).collect::<Vec<_>>(), vec![2]);
    let ckpt = &ckpts[0].1;
    assert!(ckpt.join(ADAPTER_CONFIG).is_file() && ckpt.join(ADAPTER_WEIGHTS).is_file());
    assert!(!ckpt.join("model.safetensors").exists());

    let mut resumed = lora_trainer(crashed.path());
    assert_eq!(resumed.resume().unwrap(), Some(2));
    resumed.run(|_| ControlFlow::Continue(())).unwrap();
    let clean = tempfile::tempdir().unwrap();
    let mut straight = lora_trainer(clean.path());
    straight.run(|_| ControlFlow::Continue(())).unwrap();
    let (a, b) = (resumed.named_params(), straight.named_params());
    assert_eq!(a.len(), 28);
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "adapter {na} differs after resume");
    }
    assert!(
        b.iter()
            .any(|(n, t)| n.ends_with("lora_B.weight") && t.abs().max().double_value(&[]) > 0.0),
        "training moved the adapters"
    );
    // The base weights stayed frozen.
    let fresh = tiny();
    for (name, t) in fresh.model.var_store().variables() {
        let trained = &straight.policy().model.var_store().variables()[&name];
        assert!(t.equal(trained), "base weight {name} changed");
    }
    // A LoRA checkpoint does not resume into other adapters.
    let mut other = Trainer::new(
        resume_config(crashed.path()),
        adapted(
            &LoraConfig {
                rank: 2,
                ..lora(0.1)
            },
            "tiny",
        ),
        Digits,
        dataset(),
    )
    .unwrap();
    let err = other.resume().unwrap_err().to_string();
    assert!(err.contains("rank 4") && err.contains("rank 2"), "{err}");
}

#[test]
fn merge_lora_writes_the_adapted_model() {
    let dir = tempfile::tempdir().unwrap();
    let (policy, base_dir, ckpt) = saved_adapter(dir.path(), 0.0);
    let out = dir.path().join("merged");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_cove"))
        .arg("merge-lora")
        .arg(&ckpt)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let merged = Policy::from_hf_dir(&out, Dtype::F32, Device::Cpu).unwrap();
    let err = policy.save_pretrained(&dir.path().join("x")).unwrap_err();
    assert!(err.to_string().contains("cove merge-lora"), "{err}");
    assert!(merged.model.lora().is_none());
    let d = max_diff(
        &logits(merged.model.as_ref()),
        &logits(policy.model.as_ref()),
    );
    println!("merged vs adapted: max |Δlogit| = {d:e}");
    assert!(d <= 1e-5, "merged logits differ by {d}");
    assert!(
        max_diff(
            &logits(merged.model.as_ref()),
            &logits(tiny().model.as_ref())
        ) > 1e-3
    );
    // Rollout runs on the adapted model: the same samples as the merged one's.
    let cfg = cove::rollout::SamplingConfig {
        n: 4,
        temperature: 1.0,
        max_new_tokens: 8,
        seed: 5,
        ..Default::default()
    };
    let prompts = vec![IDS[..6].to_vec(), IDS[6..].to_vec()];
    let a = cove::rollout::generate(&policy, &prompts, &cfg).unwrap();
    let m = cove::rollout::generate(&merged, &prompts, &cfg).unwrap();
    for (a, m) in a.iter().zip(&m) {
        assert_eq!(a.token_ids, m.token_ids);
        for (x, y) in a.logprobs.iter().zip(&m.logprobs) {
            assert!((x - y).abs() <= 1e-5, "{x} vs {y}");
        }
    }
    let fresh = tiny().model.var_store().variables();
    for (name, t) in fresh {
        let after = &policy.model.var_store().variables()[&name];
        assert!(t.equal(after), "rollout changed the base weight {name}");
    }
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    // --base overrides the recorded base; a folder without an adapter is refused.
    let again = dir.path().join("merged2");
    cove::model::lora::merge_checkpoint(&ckpt, Some(base_dir.to_str().unwrap()), &again).unwrap();
    let err = cove::model::lora::merge_checkpoint(&base_dir, None, &again)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(ADAPTER_CONFIG) && err.contains("not a LoRA checkpoint"),
        "{err}"
    );
}

#[test]
fn lora_section_parses_and_names_bad_fields() {
    let spec = |extra: &str| {
        toml::from_str::<ModelSpec>(&format!(
            "path = \"tiny\"\ndtype = \"f32\"\ndevice = \"cpu\"\ntiny_seed = 0\n{extra}"
        ))
    };
    assert!(spec("").unwrap().lora.is_none());
    let s = spec("[lora]\nrank = 16\nalpha = 32\ntargets = [\"q_proj\", \"v_proj\"]").unwrap();
    let l = s.lora.clone().unwrap();
    assert_eq!((l.rank, l.alpha, l.dropout), (16, 32.0, 0.0));
    let p = s.load(&Launch::from_env().unwrap()).unwrap();
    assert_eq!(p.model.lora().unwrap().config.targets, ["q_proj", "v_proj"]);
    assert_eq!(p.model.lora().unwrap().base_model, "tiny");
    let d = LoraConfig::default();
    assert_eq!((d.rank, d.alpha, d.targets.len()), (8, 8.0, 7));
    let err = spec("[lora]\nrnk = 4").unwrap_err().to_string();
    assert!(err.contains("rnk"), "{err}");
    for (extra, field) in [
        ("[lora]\nrank = 0", "model.lora.rank"),
        ("[lora]\nalpha = -1", "model.lora.alpha"),
        ("[lora]\ndropout = 1.0", "model.lora.dropout"),
        ("[lora]\ntargets = [\"qkv\"]", "model.lora.targets"),
        ("[lora]\ntargets = []", "model.lora.targets"),
    ] {
        let err = spec(extra)
            .unwrap()
            .load(&Launch::from_env().unwrap())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(field), "{extra}: {err}");
    }
}

/// Decoding with adapters: extra matmuls vs merged weights (what rollout does),
/// SmolLM2-135M-Instruct (or the tiny model when it is not installed), LoRA r = 16 on
/// every projection, 16 rows x (16-token prefill + 16 decode steps with the KV cache),
/// f32 on the CPU; the merge's own cost is counted. Five interleaved rounds; prints the
/// fastest time of each path and the median per-round ratio to the base model. A measurement, not a check:
/// `cargo test --workspace --exclude cove-verifiers-python --lib --tests --
/// --ignored lora::decode_with_adapters --nocapture`.
#[test]
#[ignore = "measurement: prints decoding times"]
fn decode_with_adapters_unmerged_vs_merged() {
    use cove::model::named::{DEFAULT_MODEL, ModelSource, resolve};
    let load = || match resolve(DEFAULT_MODEL) {
        Ok(ModelSource::Folder(dir)) => Policy::from_hf_dir(&dir, Dtype::F32, Device::Cpu).unwrap(),
        _ => tiny(),
    };
    let (rows, prompt, steps) = (16i64, 16i64, 16i64);
    let decode = |model: &dyn CausalLm, merged: bool| {
        let _guard = tch::no_grad_guard();
        let t = std::time::Instant::now();
        model.set_adapters_merged(merged);
        let mut cache = model.new_cache(rows, prompt + steps);
        let ids = (Tensor::arange(rows * prompt, (Kind::Int64, Device::Cpu)) * 7 + 3)
            .remainder(90)
            .view([rows, prompt]);
        let pos = Tensor::arange(prompt, (Kind::Int64, Device::Cpu)).repeat([rows, 1]);
        let mut mask = Tensor::ones([rows, prompt], (Kind::Int64, Device::Cpu));
        let mut logits = model.forward(&ids, &pos, &mask, Some(&mut cache)).unwrap();
        for i in 0..steps {
            let next = logits.select(1, -1).argmax(-1, true);
            mask = Tensor::cat(&[&mask, &mask.narrow(1, 0, 1)], 1);
            let pos = Tensor::full([rows, 1], prompt + i, (Kind::Int64, Device::Cpu));
            logits = model.forward(&next, &pos, &mask, Some(&mut cache)).unwrap();
        }
        model.set_adapters_merged(false);
        t.elapsed().as_secs_f64()
    };
    let base = load();
    let mut adapted = load();
    adapted
        .model
        .attach_lora(
            &LoraConfig {
                rank: 16,
                alpha: 32.0,
                ..LoraConfig::default()
            },
            "bench",
        )
        .unwrap();
    set_b(adapted.model.as_ref());
    // Interleaved rounds (the box is shared): the fastest of each, and per-round ratios.
    let (mut plain, mut extra, mut merged) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
    let (mut extra_ratio, mut merged_ratio) = (Vec::new(), Vec::new());
    let mut merge_only = f64::INFINITY;
    for _ in 0..5 {
        let t = std::time::Instant::now();
        adapted.model.set_adapters_merged(true);
        merge_only = merge_only.min(t.elapsed().as_secs_f64());
        adapted.model.set_adapters_merged(false);
        let p = decode(base.model.as_ref(), false);
        let e = decode(adapted.model.as_ref(), false);
        let m = decode(adapted.model.as_ref(), true);
        (plain, extra, merged) = (plain.min(p), extra.min(e), merged.min(m));
        extra_ratio.push(e / p);
        merged_ratio.push(m / p);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let tokens = (rows * steps) as f64;
    println!(
        "{}: base {plain:.3} s ({:.0} tok/s); adapters as extra matmuls {extra:.3} s \
         ({:.0} tok/s, median {:.2}x base); merged once per rollout {merged:.3} s \
         ({:.0} tok/s, median {:.2}x base; the merge itself {merge_only:.3} s)",
        base.source.display(),
        tokens / plain,
        tokens / extra,
        median(extra_ratio),
        tokens / merged,
        median(merged_ratio),
    );
}

/// With the adapters off the model is its base exactly (the `ref_kl` reference of a LoRA
/// run, no second copy of the weights), and back on it is the adapted model again.
#[test]
fn adapters_off_computes_the_base_model_exactly() {
    let policy = adapted(&lora(0.0), "tiny");
    set_b(policy.model.as_ref());
    let adapted_logits = logits(policy.model.as_ref());
    let base_logits = logits(tiny().model.as_ref());
    assert!(max_diff(&adapted_logits, &base_logits) > 1e-3);
    {
        let _off = cove::model::lora::AdaptersOff::new(policy.model.as_ref());
        assert!(logits(policy.model.as_ref()).equal(&base_logits));
    }
    assert!(logits(policy.model.as_ref()).equal(&adapted_logits));
}
