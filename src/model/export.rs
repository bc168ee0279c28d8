//! `cove export`: a fully fine-tuned checkpoint as a Hugging Face folder that
//! transformers loads (LoRA checkpoints go through [`super::lora::merge_checkpoint`]).
//!
//! A checkpoint holds the policy's variables under their Hugging Face names but not the
//! model's configuration or tokenizer: those come from the base model, named by the run
//! folder's `config.toml` (`[model] path`, two folders above the checkpoint) or given.

use super::lora::ADAPTER_CONFIG;
use super::{Dtype, ModelError, ModelSpec};
use crate::dist::Launch;
use std::path::{Path, PathBuf};

/// Why a checkpoint could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The checkpoint holds LoRA adapters, not the whole model.
    #[error(
        "{}: a LoRA checkpoint (it holds adapters only): `cove merge-lora {} OUT` writes the merged model",
        path.display(), path.display()
    )]
    Lora {
        /// The checkpoint folder.
        path: PathBuf,
    },
    /// A file the export needs is absent or unreadable.
    #[error("{}: {why}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The base model could not be resolved.
    #[error("base model `{name}`: {why}")]
    Base {
        /// The model value.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// The checkpoint's tensors do not fit the base model, or writing failed.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// The `[model]` section recorded in the run folder of `checkpoint`
/// (`../../config.toml`).
fn recorded_model(checkpoint: &Path) -> Result<ModelSpec, ExportError> {
    let config = checkpoint
        .parent()
        .and_then(Path::parent)
        .map(|run| run.join("config.toml"))
        .unwrap_or_else(|| PathBuf::from("config.toml"));
    let bad = |why: String| ExportError::File {
        path: config.clone(),
        why,
    };
    let text = std::fs::read_to_string(&config).map_err(|e| {
        bad(format!(
            "{e} (the run's configuration names the base; or pass --base)"
        ))
    })?;
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    table
        .remove("model")
        .ok_or_else(|| bad("no [model] section".into()))?
        .try_into()
        .map_err(|e: toml::de::Error| bad(format!("[model]: {e}")))
}

/// Writes the policy of the fully fine-tuned `checkpoint` (its `model.safetensors`) as a
/// Hugging Face folder at `out` (replaced whole): the base model's configuration,
/// tokenizer and chat template with the checkpoint's weights, in f32 (a bf16-mixed
/// run's checkpoint holds its f32 masters). `base` overrides the base the run recorded.
/// Returns a one-line summary.
pub fn export_checkpoint(
    checkpoint: &Path,
    base: Option<&str>,
    out: &Path,
) -> Result<String, ExportError> {
    if checkpoint.join(ADAPTER_CONFIG).is_file() {
        return Err(ExportError::Lora {
            path: checkpoint.to_path_buf(),
        });
    }
    let weights = checkpoint.join("model.safetensors");
    if !weights.is_file() {
        return Err(ExportError::File {
            path: weights,
            why: "missing (not a checkpoint folder: `runs/NAME/checkpoints/step-N`)".into(),
        });
    }
    let recorded = match base {
        Some(path) => ModelSpec {
            path: path.to_string(),
            dtype: Dtype::F32,
            device: "cpu".into(),
            tiny_seed: 0,
            weights: None,
            lora: None,
        },
        None => recorded_model(checkpoint)?,
    };
    // The base as the run loaded it, in f32 on the CPU: its warm-start weights and
    // adapters are not needed, the checkpoint replaces every variable.
    let spec = ModelSpec {
        dtype: Dtype::F32,
        device: "cpu".into(),
        weights: None,
        lora: None,
        ..recorded
    };
    let name = spec.path.clone();
    let mut policy = Launch::from_vars(|_| None)
        .map_err(|e| e.to_string())
        .and_then(|launch| spec.load(&launch).map_err(|e| e.to_string()))
        .map_err(|why| ExportError::Base {
            name: name.clone(),
            why,
        })?;
    policy
        .model
        .var_store_mut()
        .load(&weights)
        .map_err(|e| ExportError::File {
            path: weights.clone(),
            why: format!("does not fit base model `{name}`: {e}"),
        })?;
    policy.save_pretrained_replacing(out)?;
    Ok(format!(
        "exported {} (base {name}) to {}\n",
        checkpoint.display(),
        out.display()
    ))
}
