//! Helpers shared by the suite's modules: running the workspace's binaries from the
//! repository root, and a model's logits on fixed token ids.

use cove::model::CausalLm;
use std::ffi::OsStr;
use std::process::Command;
use tch::{Device, Kind, Tensor};

/// Runs `binary` from the repository root (the defaults name `datasets/...`) with
/// `args`; returns whether it succeeded and its stdout and stderr together.
pub fn run_binary<I, S>(binary: &str, args: I) -> (bool, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let output = Command::new(binary)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("the binary starts");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Twelve token ids inside the tiny vocabulary.
pub const IDS: [i64; 12] = [5, 17, 42, 8, 60, 3, 98, 21, 33, 70, 12, 4];

/// The logits `[12, vocab]` of `model` on [`IDS`] as one sequence (no grad).
pub fn logits(model: &dyn CausalLm) -> Tensor {
    let t = IDS.len() as i64;
    let x = Tensor::from_slice(&IDS).view([1, t]);
    let pos = Tensor::arange(t, (Kind::Int64, Device::Cpu)).view([1, t]);
    let mask = Tensor::ones([1, t], (Kind::Int64, Device::Cpu));
    let _guard = tch::no_grad_guard();
    model.forward(&x, &pos, &mask, None).unwrap().squeeze_dim(0)
}

/// Largest absolute difference, in f64.
pub fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}
