//! Hugging Face parity on the committed fixtures (tests/fixtures/{qwen2,llama}, built by
//! scripts/make_fixtures.py with transformers): logits, KV cache, chat template,
//! tokenizer, EOS ids, dtypes.

use std::path::PathBuf;

use cove::model::{CausalLm, Dtype, Message, Policy};
use tch::{Device, Kind, Tensor};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load(name: &str, dtype: Dtype) -> Policy {
    Policy::from_hf_dir(&fixture(name), dtype, Device::Cpu).expect("fixture loads")
}

/// (input ids, expected logits [T, V]) pairs from expected.safetensors.
fn expected(name: &str) -> Vec<(Vec<i64>, Tensor)> {
    let tensors = Tensor::read_safetensors(fixture(name).join("expected.safetensors")).unwrap();
    let get = |k: &str| {
        tensors
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, t)| t.shallow_clone())
            .unwrap()
    };
    (0..2)
        .map(|i| {
            let ids = Vec::<i64>::try_from(get(&format!("input_ids_{i}"))).unwrap();
            (ids, get(&format!("logits_{i}")))
        })
        .collect()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

fn single(model: &dyn CausalLm, ids: &[i64]) -> Tensor {
    let t = ids.len() as i64;
    let x = Tensor::from_slice(ids).view([1, t]);
    let pos = Tensor::arange(t, (Kind::Int64, Device::Cpu)).view([1, t]);
    let mask = Tensor::ones([1, t], (Kind::Int64, Device::Cpu));
    let _guard = tch::no_grad_guard();
    model.forward(&x, &pos, &mask, None).unwrap().squeeze_dim(0)
}

/// Both sequences in one padded batch (left or right): valid positions must match.
fn padded(model: &dyn CausalLm, seqs: &[Vec<i64>], left: bool) -> Vec<Tensor> {
    let l = seqs.iter().map(Vec::len).max().unwrap();
    let (mut ids, mut mask, mut pos) = (vec![], vec![], vec![]);
    for s in seqs {
        let pad = l - s.len();
        let (ids_row, mask_row, pos_row): (Vec<i64>, Vec<i64>, Vec<i64>) = if left {
            (
                std::iter::repeat_n(0, pad)
                    .chain(s.iter().copied())
                    .collect(),
                std::iter::repeat_n(0, pad)
                    .chain(std::iter::repeat_n(1, s.len()))
                    .collect(),
                std::iter::repeat_n(0, pad)
                    .chain(0..s.len() as i64)
                    .collect(),
            )
        } else {
            (
                s.iter()
                    .copied()
                    .chain(std::iter::repeat_n(0, pad))
                    .collect(),
                std::iter::repeat_n(1, s.len())
                    .chain(std::iter::repeat_n(0, pad))
                    .collect(),
                (0..l as i64).collect(),
            )
        };
        ids.extend(ids_row);
        mask.extend(mask_row);
        pos.extend(pos_row);
    }
    let b = seqs.len() as i64;
    let v = |x: &[i64]| Tensor::from_slice(x).view([b, l as i64]);
    let _guard = tch::no_grad_guard();
    let logits = model.forward(&v(&ids), &v(&pos), &v(&mask), None).unwrap();
    seqs.iter()
        .enumerate()
        .map(|(i, s)| {
            let start = if left { (l - s.len()) as i64 } else { 0 };
            logits.get(i as i64).narrow(0, start, s.len() as i64)
        })
        .collect()
}

fn check_logits(name: &str) {
    let policy = load(name, Dtype::F32);
    let cases = expected(name);
    for (i, (ids, want)) in cases.iter().enumerate() {
        let got = single(policy.model.as_ref(), ids);
        assert_eq!(got.size(), want.size());
        let d = max_diff(&got, want);
        println!("{name} sequence {i}: max |Δlogit| = {d:e}");
        assert!(d <= 1e-4, "{name} sequence {i}: max |Δlogit| = {d}");
    }
    let seqs: Vec<Vec<i64>> = cases.iter().map(|(ids, _)| ids.clone()).collect();
    for left in [true, false] {
        for (i, got) in padded(policy.model.as_ref(), &seqs, left)
            .iter()
            .enumerate()
        {
            let d = max_diff(got, &cases[i].1);
            assert!(d <= 1e-4, "{name} padded (left={left}) sequence {i}: {d}");
        }
    }
}

#[test]
fn qwen2_logits_match_transformers() {
    check_logits("qwen2");
}

#[test]
fn llama_logits_match_transformers() {
    check_logits("llama");
}

/// Prefill a prefix, then decode one token at a time with the cache: same logits as
/// the uncached forward, on a left-padded batch of two sequences, within `tol`.
fn check_cache(model: &dyn CausalLm, seqs: &[Vec<i64>], tol: f64) {
    let full = padded(model, seqs, true);
    let l = seqs.iter().map(Vec::len).max().unwrap() as i64;
    let b = seqs.len() as i64;
    let (mut ids, mut mask, mut pos) = (vec![], vec![], vec![]);
    for s in seqs {
        let pad = l as usize - s.len();
        ids.extend(std::iter::repeat_n(0, pad).chain(s.iter().copied()));
        mask.extend(std::iter::repeat_n(0i64, pad).chain(std::iter::repeat_n(1, s.len())));
        pos.extend(std::iter::repeat_n(0i64, pad).chain(0..s.len() as i64));
    }
    let ids = Tensor::from_slice(&ids).view([b, l]);
    let mask = Tensor::from_slice(&mask).view([b, l]);
    let pos = Tensor::from_slice(&pos).view([b, l]);
    let prefix = l - 6;
    let _guard = tch::no_grad_guard();
    let mut cache = model.new_cache(b, 4); // small on purpose: the cache must grow
    let mut steps = vec![
        model
            .forward(
                &ids.narrow(1, 0, prefix),
                &pos.narrow(1, 0, prefix),
                &mask.narrow(1, 0, prefix),
                Some(&mut cache),
            )
            .unwrap(),
    ];
    for t in prefix..l {
        steps.push(
            model
                .forward(
                    &ids.narrow(1, t, 1),
                    &pos.narrow(1, t, 1),
                    &mask.narrow(1, 0, t + 1),
                    Some(&mut cache),
                )
                .unwrap(),
        );
    }
    assert_eq!(cache.len(), l);
    let cached = Tensor::cat(&steps, 1);
    for (i, s) in seqs.iter().enumerate() {
        let got = cached
            .get(i as i64)
            .narrow(0, l - s.len() as i64, s.len() as i64);
        let d = max_diff(&got, &full[i]);
        let scale = full[i].abs().max().double_value(&[]);
        println!("cached vs uncached, sequence {i}: {d:e} (max |logit| {scale:.2})");
        assert!(
            d <= tol,
            "cached vs uncached, sequence {i}: {d} (max |logit| {scale})"
        );
    }
}

#[test]
fn kv_cached_decoding_matches_uncached_forward() {
    for name in ["qwen2", "llama"] {
        let policy = load(name, Dtype::F32);
        let seqs: Vec<Vec<i64>> = expected(name).into_iter().map(|(ids, _)| ids).collect();
        // The fixtures' large random weights give logits up to ~10, where f32 rounding
        // of the two attention paths reaches ~1.4e-5: 5e-5 there.
        check_cache(policy.model.as_ref(), &seqs, 5e-5);
    }
    let tiny = cove::model::tiny::policy(&Default::default(), 3, Device::Cpu).unwrap();
    let seqs = vec![
        tiny.encode("What is 12+7?").unwrap(),
        tiny.encode("<|im_start|>user\nWhat is 100+250?<|im_end|>\n")
            .unwrap(),
    ];
    // The tiny model (transformers' init scale, logits below 1): 1e-5.
    check_cache(tiny.model.as_ref(), &seqs, 1e-5);
}

#[derive(serde::Deserialize)]
struct ChatCase {
    messages: Vec<Message>,
    add_generation_prompt: bool,
    text: String,
    ids: Vec<i64>,
}

#[test]
fn chat_template_and_tokenizer_match_transformers() {
    for name in ["qwen2", "llama"] {
        let policy = load(name, Dtype::F32);
        let text = std::fs::read_to_string(fixture(name).join("chat.json")).unwrap();
        let cases: Vec<ChatCase> = serde_json::from_str(&text).unwrap();
        assert_eq!(cases.len(), 3);
        for (i, c) in cases.iter().enumerate() {
            let got = policy
                .apply_chat_template(&c.messages, c.add_generation_prompt)
                .unwrap();
            assert_eq!(got.as_bytes(), c.text.as_bytes(), "{name} chat case {i}");
            assert_eq!(
                policy.encode(&got).unwrap(),
                c.ids,
                "{name} token ids, case {i}"
            );
        }
    }
}

#[test]
fn special_ids_come_from_generation_config() {
    let q = load("qwen2", Dtype::F32);
    assert_eq!(q.eos_token_ids, vec![2, 0]);
    assert_eq!(q.pad_token_id, 0);
    let l = load("llama", Dtype::F32);
    assert_eq!(l.eos_token_ids, vec![2]);
    assert_eq!(
        l.pad_token_id, 2,
        "no pad token: falls back to the first EOS id"
    );
    assert_eq!(l.model.vocab_size(), 112);
}

#[test]
fn half_precision_loads_close_to_f32() {
    let (ids, want) = expected("qwen2").remove(0);
    for dtype in [Dtype::Bf16, Dtype::F16] {
        let policy = load("qwen2", dtype);
        assert_eq!(policy.model.kind(), dtype.kind());
        let got = single(policy.model.as_ref(), &ids);
        assert_eq!(got.kind(), dtype.kind());
        let scale = want.abs().max().double_value(&[]);
        let d = max_diff(&got, &want);
        assert!(
            d.is_finite() && d < 0.1 * scale,
            "{dtype:?}: {d} (logit scale {scale})"
        );
    }
}

#[test]
fn save_pretrained_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = cove::model::tiny::policy(&Default::default(), 5, Device::Cpu).unwrap();
    tiny.save_pretrained(dir.path()).unwrap();
    let back = Policy::from_hf_dir(dir.path(), Dtype::F32, Device::Cpu).unwrap();
    let ids = tiny.encode("What is 12+7?").unwrap();
    let d = max_diff(
        &single(tiny.model.as_ref(), &ids),
        &single(back.model.as_ref(), &ids),
    );
    assert_eq!(d, 0.0);
    assert_eq!(back.eos_token_ids, tiny.eos_token_ids);
    assert_eq!(back.pad_token_id, tiny.pad_token_id);
    let msgs = [Message::user("What is 12+7?")];
    assert_eq!(
        back.apply_chat_template(&msgs, true).unwrap(),
        tiny.apply_chat_template(&msgs, true).unwrap()
    );
    assert_eq!(
        back.encode("a b\n<|im_end|>").unwrap(),
        ids_of(&tiny, "a b\n<|im_end|>")
    );
}

fn ids_of(p: &Policy, s: &str) -> Vec<i64> {
    p.encode(s).unwrap()
}
