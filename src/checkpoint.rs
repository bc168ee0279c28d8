//! Resumable checkpoints, written atomically.
//!
//! A checkpoint is a folder `step-NNNNNNNN/` under the run's checkpoint folder with
//! `model.safetensors` (every variable of the policy, Hugging Face names),
//! `optimizer.safetensors` (AdamW moments) and `state.json` ([`TrainState`]: step,
//! data cursor, RNG seed, optimizer step, entropy-control strength). A LoRA run
//! ([`save_adapter`]) stores PEFT's `adapter_config.json` and
//! `adapter_model.safetensors` (the adapters, PEFT's key names) instead of
//! `model.safetensors`, and no frozen base weight; PEFT loads such a folder as an
//! adapter (`PeftModel.from_pretrained(base, folder)`). It is first
//! written into a temporary folder `.tmp-step-NNNNNNNN-<pid>/`, every file is fsynced,
//! and the folder is renamed into place (then the parent is fsynced): a kill at any
//! moment leaves either the complete new checkpoint or none, never a torn one, and
//! the previous checkpoints are untouched. Temporary folders are ignored when looking
//! for the latest checkpoint.

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};
use tch::Tensor;

use crate::model::lora::{ADAPTER_CONFIG, ADAPTER_WEIGHTS};

/// Everything besides tensors needed to continue a run on the same trajectory. All
/// randomness of a step is derived from `(seed, step)` (rollout streams, Clip-Cov keys)
/// and the data order from `(seed, epoch)`, so these numbers are the RNG state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Steps completed.
    pub step: u64,
    /// Prompts consumed from the dataset (across epochs).
    pub data_cursor: u64,
    /// The run's seed.
    pub seed: u64,
    /// Optimizer steps taken.
    pub optimizer_step: u64,
    /// The entropy control's current strength.
    pub control_strength: f64,
}

/// Errors writing or reading checkpoints; each names the path.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A file-system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A tensor file could not be written or read, or does not fit the model.
    #[error("{path}: {why}")]
    Tensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// `state.json` is malformed.
    #[error("{path}: {source}")]
    State {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn fsync(path: &Path) -> Result<(), CheckpointError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io(path))
}

/// The folder name of step `step`'s checkpoint.
pub fn step_dir_name(step: u64) -> String {
    format!("step-{step:08}")
}

/// Writes a checkpoint of `step` into `dir` atomically and returns its folder.
/// `model` are the policy's named variables, `optimizer` the optimizer's state tensors.
pub fn save(
    dir: &Path,
    model: &[(String, Tensor)],
    optimizer: &[(String, Tensor)],
    state: &TrainState,
) -> Result<PathBuf, CheckpointError> {
    write(dir, Weights::Full(model), optimizer, state)
}

/// Writes a LoRA run's checkpoint of `step` into `dir` atomically and returns its
/// folder: `adapter` (PEFT key names) as `adapter_model.safetensors`, `config` as
/// `adapter_config.json`, the optimizer's state tensors and `state.json`.
pub fn save_adapter(
    dir: &Path,
    adapter: &[(String, Tensor)],
    config: &serde_json::Value,
    optimizer: &[(String, Tensor)],
    state: &TrainState,
) -> Result<PathBuf, CheckpointError> {
    write(dir, Weights::Adapter(adapter, config), optimizer, state)
}

/// What a checkpoint holds of the model.
enum Weights<'a> {
    /// Every variable (`model.safetensors`).
    Full(&'a [(String, Tensor)]),
    /// A LoRA adapter and its PEFT configuration.
    Adapter(&'a [(String, Tensor)], &'a serde_json::Value),
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), CheckpointError> {
    let json = serde_json::to_vec_pretty(value).map_err(|source| CheckpointError::State {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::write(path, json).map_err(io(path))?;
    fsync(path)
}

fn write(
    dir: &Path,
    model: Weights,
    optimizer: &[(String, Tensor)],
    state: &TrainState,
) -> Result<PathBuf, CheckpointError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let final_dir = dir.join(step_dir_name(state.step));
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        step_dir_name(state.step),
        std::process::id()
    ));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir(&tmp).map_err(io(&tmp))?;
    let (model_file, tensors) = match model {
        Weights::Full(t) => ("model.safetensors", t),
        Weights::Adapter(t, config) => {
            write_json(&tmp.join(ADAPTER_CONFIG), config)?;
            (ADAPTER_WEIGHTS, t)
        }
    };
    for (name, tensors) in [(model_file, tensors), ("optimizer.safetensors", optimizer)] {
        let path = tmp.join(name);
        Tensor::write_safetensors(tensors, &path).map_err(|e| CheckpointError::Tensors {
            path: path.clone(),
            why: e.to_string(),
        })?;
        fsync(&path)?;
    }
    write_json(&tmp.join("state.json"), state)?;
    fsync(&tmp)?;
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(io(&final_dir))?;
    }
    std::fs::rename(&tmp, &final_dir).map_err(io(&final_dir))?;
    fsync(dir)?;
    Ok(final_dir)
}

/// Completed checkpoints in `dir`, oldest first (temporary folders are skipped).
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, CheckpointError> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(n) = name
            .strip_prefix("step-")
            .and_then(|s| s.parse::<u64>().ok())
            && entry.path().join("state.json").is_file()
        {
            out.push((n, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The newest completed checkpoint in `dir`, if any.
pub fn latest(dir: &Path) -> Result<Option<PathBuf>, CheckpointError> {
    Ok(list(dir)?.pop().map(|(_, p)| p))
}

/// Deletes all but the newest `keep` checkpoints (and stale temporary folders).
pub fn prune(dir: &Path, keep: usize) -> Result<(), CheckpointError> {
    let all = list(dir)?;
    let n = all.len().saturating_sub(keep.max(1));
    for (_, path) in all.into_iter().take(n) {
        std::fs::remove_dir_all(&path).map_err(io(&path))?;
    }
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(".tmp-step-")
        {
            std::fs::remove_dir_all(entry.path()).map_err(io(&entry.path()))?;
        }
    }
    Ok(())
}

/// Named tensors, as a checkpoint stores them.
pub type NamedTensors = Vec<(String, Tensor)>;

/// Reads a checkpoint folder: its state, the model's tensors (the adapter's, from
/// `adapter_model.safetensors`, when the folder has one) and the optimizer's.
pub fn load(ckpt: &Path) -> Result<(TrainState, NamedTensors, NamedTensors), CheckpointError> {
    let state_path = ckpt.join("state.json");
    let text = std::fs::read_to_string(&state_path).map_err(io(&state_path))?;
    let state: TrainState =
        serde_json::from_str(&text).map_err(|source| CheckpointError::State {
            path: state_path,
            source,
        })?;
    let read = |name: &str| {
        let path = ckpt.join(name);
        Tensor::read_safetensors(&path).map_err(|e| CheckpointError::Tensors {
            path,
            why: e.to_string(),
        })
    };
    let model_file = if ckpt.join(ADAPTER_WEIGHTS).is_file() {
        ADAPTER_WEIGHTS
    } else {
        "model.safetensors"
    };
    Ok((state, read(model_file)?, read("optimizer.safetensors")?))
}

/// Copies saved tensors into the live variables `into` (names must match exactly).
pub fn copy_into(
    saved: &[(String, Tensor)],
    into: &[(String, Tensor)],
    path: &Path,
) -> Result<(), CheckpointError> {
    let _guard = tch::no_grad_guard();
    for (name, dst) in into {
        let src = saved
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| CheckpointError::Tensors {
                path: path.to_path_buf(),
                why: format!("no tensor `{name}`"),
            })?;
        if src.size() != dst.size() {
            return Err(CheckpointError::Tensors {
                path: path.to_path_buf(),
                why: format!(
                    "`{name}` has shape {:?}, the model {:?}",
                    src.size(),
                    dst.size()
                ),
            });
        }
        dst.shallow_clone().copy_(src);
    }
    Ok(())
}
