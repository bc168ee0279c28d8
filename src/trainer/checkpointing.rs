//! Checkpoints of a trainer: the parameters they hold, saving, and resuming (seed and
//! adapter checks, optimizer state, metrics truncated to the resumed step).

use super::TrainError;
use super::learner::Learner;
use super::shard::check_same_weights;
use crate::checkpoint::{self, TrainState};
use crate::metrics::MetricsFile;
use crate::model::lora::{ADAPTER_CONFIG, LoraConfig, PEFT_PREFIX};
use crate::run_dir::RunDir;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// The policy's parameters by Hugging Face name, sorted by name (what checkpoints
/// store): with LoRA only the adapters (PEFT's key names), not the frozen base; in
/// bf16-mixed training the f32 master weights.
pub(crate) fn named_params(l: &Learner) -> Vec<(String, Tensor)> {
    let lora = l.policy.model.lora().is_some();
    let masters = l.opt.master_weights().unwrap_or_default();
    let mut v: Vec<(String, Tensor)> = l
        .policy
        .model
        .var_store()
        .variables()
        .into_iter()
        .filter(|(name, _)| !lora || name.starts_with(PEFT_PREFIX))
        .map(|(name, t)| match masters.iter().find(|(n, _)| *n == name) {
            Some((_, master)) => (name, master.shallow_clone()),
            None => (name, t),
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Loads the newest checkpoint of the run folder into `l`, if any, and returns its
/// state. Rank 0 drops the metrics lines of the steps after it (they are redone).
pub(crate) fn resume(l: &mut Learner, run: &RunDir) -> Result<Option<TrainState>, TrainError> {
    let Some(path) = checkpoint::latest(&run.checkpoints())? else {
        return Ok(None);
    };
    let (state, model, optim) = checkpoint::load(&path)?;
    if state.seed != l.cfg.seed {
        return Err(TrainError::Resume {
            path,
            why: format!(
                "checkpoint seed {} differs from the configuration's {}",
                state.seed, l.cfg.seed
            ),
        });
    }
    check_adapter_config(l, &path)?;
    checkpoint::copy_into(&model, &named_params(l), &path)?;
    let resume_err = |why| TrainError::Resume {
        path: path.clone(),
        why,
    };
    l.opt.load_master_weights(&model).map_err(resume_err)?;
    l.opt
        .load_state(&optim, state.optimizer_step)
        .map_err(resume_err)?;
    l.control.set_strength(state.control_strength);
    if l.is_main_rank() {
        let metrics = run.metrics();
        MetricsFile::truncate_after(&metrics, state.step).map_err(|source| {
            TrainError::Metrics {
                path: metrics,
                source,
            }
        })?;
    }
    check_same_weights(
        l.comm.as_ref(),
        &named_params(l),
        &format!("the checkpoint {}", path.display()),
    )?;
    Ok(Some(state))
}

/// A LoRA checkpoint resumes only into the same adapters (rank, alpha, dropout,
/// targets), a full one only into a model without adapters.
fn check_adapter_config(l: &Learner, path: &Path) -> Result<(), TrainError> {
    let file = path.join(ADAPTER_CONFIG);
    let why = match (l.policy.model.lora(), file.is_file()) {
        (None, false) => return Ok(()),
        (None, true) => "a LoRA checkpoint, but the model has no adapters".to_string(),
        (Some(_), false) => "a full checkpoint, but the model has LoRA adapters".into(),
        (Some(live), true) => {
            let (saved, _) = LoraConfig::from_peft_file(&file).map_err(|e| TrainError::Resume {
                path: path.to_path_buf(),
                why: e.to_string(),
            })?;
            if saved.same_adapter(&live.config) {
                return Ok(());
            }
            let c = &live.config;
            format!(
                "adapter (rank {}, alpha {}, dropout {}, targets {:?}) differs from model.lora \
                 (rank {}, alpha {}, dropout {}, targets {:?})",
                saved.rank,
                saved.alpha,
                saved.dropout,
                saved.targets,
                c.rank,
                c.alpha,
                c.dropout,
                c.targets
            )
        }
    };
    Err(TrainError::Resume {
        path: path.to_path_buf(),
        why,
    })
}

/// Writes a checkpoint of `state` now (atomically) and prunes old ones; returns its
/// folder. Data-parallel, rank 0 writes it and the other ranks (whose state is the
/// same) only return where it goes.
pub(crate) fn save(l: &Learner, state: &TrainState, run: &RunDir) -> Result<PathBuf, TrainError> {
    let dir = run.checkpoints();
    if !l.is_main_rank() {
        return Ok(dir.join(checkpoint::step_dir_name(state.step)));
    }
    let (params, optim) = (named_params(l), l.opt.state_tensors());
    let path = match l.policy.model.lora() {
        Some(lora) => checkpoint::save_adapter(&dir, &params, &lora.peft_config(), &optim, state)?,
        None => checkpoint::save(&dir, &params, &optim, state)?,
    };
    checkpoint::prune(&dir, l.cfg.checkpoint.keep)?;
    Ok(path)
}
