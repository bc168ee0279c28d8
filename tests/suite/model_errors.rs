//! Bad input gives a clear error naming the file and the field or tensor.

use std::path::{Path, PathBuf};

use cove::model::{Dtype, Message, ModelError, Policy};
use tch::Device;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A writable copy of a fixture folder.
fn copy_of(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

fn load_err(dir: &Path) -> String {
    match Policy::from_hf_dir(dir, Dtype::F32, Device::Cpu) {
        Ok(_) => panic!("{} loaded, expected an error", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn assert_mentions(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "error `{msg}` does not mention `{p}`");
    }
}

#[test]
fn missing_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("nope");
    assert_mentions(&load_err(&gone), &["nope", "missing"]);

    for (file, needle) in [
        ("config.json", "config.json"),
        ("tokenizer.json", "tokenizer.json"),
        ("model.safetensors", "model.safetensors"),
    ] {
        let d = copy_of("qwen2");
        std::fs::remove_file(d.path().join(file)).unwrap();
        assert_mentions(&load_err(d.path()), &[needle, "missing"]);
    }
    // A shard listed in the index but absent.
    let d = copy_of("llama");
    std::fs::remove_file(d.path().join("model-00003-of-00008.safetensors")).unwrap();
    assert_mentions(
        &load_err(d.path()),
        &["model-00003-of-00008.safetensors", "missing"],
    );
}

#[test]
fn unsupported_architecture_names_the_field() {
    let d = copy_of("qwen2");
    edit_json(&d.path().join("config.json"), |v| {
        v["model_type"] = "gpt2".into()
    });
    assert_mentions(&load_err(d.path()), &["config.json", "model_type", "gpt2"]);

    let d = copy_of("llama");
    edit_json(&d.path().join("config.json"), |v| {
        v["rope_scaling"]["rope_type"] = "yarn".into();
    });
    assert_mentions(
        &load_err(d.path()),
        &["config.json", "rope_scaling.rope_type", "yarn"],
    );

    let d = copy_of("qwen2");
    edit_json(&d.path().join("config.json"), |v| {
        v["num_key_value_heads"] = 3.into()
    });
    assert_mentions(&load_err(d.path()), &["config.json", "num_key_value_heads"]);

    let d = copy_of("qwen2");
    edit_json(&d.path().join("config.json"), |v| {
        v["hidden_act"] = "gelu".into()
    });
    assert_mentions(&load_err(d.path()), &["config.json", "hidden_act"]);
}

#[test]
fn malformed_json_names_file_and_line() {
    let d = copy_of("qwen2");
    std::fs::write(
        d.path().join("config.json"),
        "{\n  \"model_type\": \"qwen2\",\n  oops\n}",
    )
    .unwrap();
    assert_mentions(&load_err(d.path()), &["config.json", "line 3"]);
    let d = copy_of("qwen2");
    edit_json(&d.path().join("config.json"), |v| {
        v.as_object_mut().unwrap().remove("hidden_size");
    });
    assert_mentions(&load_err(d.path()), &["config.json", "hidden_size"]);
}

#[test]
fn shape_mismatch_names_file_and_tensor() {
    let d = copy_of("qwen2");
    edit_json(&d.path().join("config.json"), |v| {
        v["intermediate_size"] = 48.into()
    });
    assert_mentions(
        &load_err(d.path()),
        &[
            "model.safetensors",
            "model.layers.0.mlp.gate_proj.weight",
            "shape mismatch",
        ],
    );
    // Untying the embeddings needs an lm_head the checkpoint does not have.
    let d = copy_of("qwen2");
    edit_json(&d.path().join("config.json"), |v| {
        v["tie_word_embeddings"] = false.into()
    });
    assert_mentions(&load_err(d.path()), &["lm_head.weight", "missing"]);
}

#[test]
fn bad_eos_in_generation_config_is_named() {
    let d = copy_of("qwen2");
    edit_json(&d.path().join("generation_config.json"), |v| {
        v["eos_token_id"] = "x".into()
    });
    assert_mentions(
        &load_err(d.path()),
        &["generation_config.json", "eos_token_id"],
    );
    let d = copy_of("qwen2");
    edit_json(&d.path().join("generation_config.json"), |v| {
        v["eos_token_id"] = 5000.into()
    });
    assert_mentions(
        &load_err(d.path()),
        &["generation_config.json", "eos_token_id", "5000"],
    );
}

#[test]
fn missing_or_broken_chat_template_is_named() {
    let d = copy_of("llama");
    edit_json(&d.path().join("tokenizer_config.json"), |v| {
        v.as_object_mut().unwrap().remove("chat_template");
    });
    let p = Policy::from_hf_dir(d.path(), Dtype::F32, Device::Cpu).unwrap();
    let e = p
        .apply_chat_template(&[Message::user("hi")], true)
        .unwrap_err();
    assert!(matches!(e, ModelError::ChatTemplate { .. }));
    assert_mentions(
        &e.to_string(),
        &["tokenizer_config.json", "chat_template", "no chat template"],
    );

    let d = copy_of("llama");
    edit_json(&d.path().join("tokenizer_config.json"), |v| {
        v["chat_template"] = "{% for m in messages %}{{ m.content }".into();
    });
    assert_mentions(
        &load_err(d.path()),
        &["tokenizer_config.json", "chat_template", "does not compile"],
    );

    // The template's own raise_exception surfaces with its message.
    let p = Policy::from_hf_dir(&fixture("llama"), Dtype::F32, Device::Cpu).unwrap();
    let e = p
        .apply_chat_template(&[Message::user("a"), Message::user("b")], true)
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["tokenizer_config.json", "roles must alternate"]);
}

#[test]
fn truncated_safetensors_is_reported() {
    let d = copy_of("qwen2");
    let path = d.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert_mentions(&load_err(d.path()), &["model.safetensors"]);
}
