//! `cove export`: a fully fine-tuned checkpoint becomes a Hugging Face folder that
//! transformers loads, with the trained policy's logits; LoRA checkpoints are sent to
//! `merge-lora`.

use crate::test_util::{IDS, logits, max_diff, run_binary};
use cove::model::Policy;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::{Device, Tensor};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cove(args: &[&str], paths: &[&Path]) -> (bool, String) {
    let args = args
        .iter()
        .map(OsStr::new)
        .chain(paths.iter().map(|p| p.as_os_str()));
    run_binary(env!("CARGO_BIN_EXE_cove"), args)
}

#[test]
fn an_exported_checkpoint_loads_in_transformers_with_the_trained_logits() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // Two steps of the tiny policy at a learning rate that moves it.
    let args = [
        "--quiet",
        "--steps",
        "2",
        "--set",
        "model.path=\"tiny\"",
        "--set",
        "data.eval_limit=2",
        "--set",
        "trainer.optim.lr=1e-2",
        "--out",
    ];
    let (ok, text) = run_binary(
        env!("CARGO_BIN_EXE_train-math"),
        args.map(OsStr::new).into_iter().chain([run.as_os_str()]),
    );
    assert!(ok, "{text}");
    let ckpt = cove::checkpoint::latest(&run.join("checkpoints"))
        .unwrap()
        .expect("a checkpoint");
    let out = dir.path().join("exported");
    let (ok, text) = cove(&["export"], &[&ckpt, &out]);
    assert!(ok && text.contains("base tiny"), "{text}");

    // Cove's trained policy: the tiny policy with the checkpoint's weights.
    let mut policy = cove::model::tiny::policy(&Default::default(), 0, Device::Cpu).unwrap();
    let untrained = logits(policy.model.as_ref());
    policy
        .model
        .var_store_mut()
        .load(ckpt.join("model.safetensors"))
        .unwrap();
    let expected = logits(policy.model.as_ref());
    assert!(
        max_diff(&expected, &untrained) > 1e-4,
        "training moved the policy"
    );
    // Cove reads its own export back to the same logits ...
    let back = Policy::from_hf_dir(&out, cove::model::Dtype::F32, Device::Cpu).unwrap();
    assert_eq!(max_diff(&logits(back.model.as_ref()), &expected), 0.0);
    // ... and so does transformers.
    let saved = dir.path().join("hf_logits.safetensors");
    let script = r#"
import sys, torch, transformers, safetensors.torch
model = transformers.AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)
model.eval()
tok = transformers.AutoTokenizer.from_pretrained(sys.argv[1])
assert tok.decode([5, 17]) != ""
ids = torch.tensor([[int(t) for t in sys.argv[3].split(",")]])
with torch.no_grad():
    logits = model(input_ids=ids).logits[0]
safetensors.torch.save_file({"logits": logits.contiguous()}, sys.argv[2])
"#;
    let ids: Vec<String> = IDS.iter().map(i64::to_string).collect();
    let result = Command::new(root().join(".venv/bin/python"))
        .args(["-c", script])
        .arg(&out)
        .arg(&saved)
        .arg(ids.join(","))
        .output()
        .expect("run .venv/bin/python (scripts/setup.sh installs transformers)");
    assert!(
        result.status.success(),
        "transformers failed: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    let hf = Tensor::read_safetensors(&saved).unwrap().remove(0).1;
    let d = max_diff(&hf, &expected);
    println!("transformers vs Cove on the exported checkpoint: max |Δlogit| = {d:e}");
    assert!(d <= 1e-4, "transformers' logits differ from Cove's by {d}");
}

#[test]
fn a_lora_checkpoint_is_sent_to_merge_lora() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("step-00000001");
    std::fs::create_dir_all(&ckpt).unwrap();
    std::fs::write(ckpt.join("adapter_config.json"), "{}").unwrap();
    let (ok, text) = cove(&["export"], &[&ckpt, &dir.path().join("out")]);
    assert!(!ok && text.contains("merge-lora"), "{text}");
    let empty = dir.path().join("nothing");
    std::fs::create_dir_all(&empty).unwrap();
    let (ok, text) = cove(&["export"], &[&empty, &dir.path().join("out")]);
    assert!(!ok && text.contains("model.safetensors"), "{text}");
}
