//! [`Learner`]: what the update stages work with (configuration, policy, reference,
//! entropy control, optimizer, process group), passed to them explicitly.

use crate::batching::MicroBatching;
use crate::config::TrainConfig;
use crate::dist::Collective;
use crate::loss::EntropyControl;
use crate::model::Policy;
use crate::optim::AdamW;

/// The frozen policy the `ref_kl` penalty compares with.
pub(crate) enum Reference {
    /// A separate frozen model (full fine-tuning: the starting weights, loaded again).
    Policy(Box<Policy>),
    /// The trained policy's own base weights with its LoRA adapters switched off: the
    /// starting model, with no second copy of the weights.
    AdapterBase,
}

/// The learning side of a trainer: everything an update reads or changes. The trainer
/// owns one; the stages in `forward`, `update`, `correction`, `shard` and
/// `checkpointing` take it as an argument.
pub(crate) struct Learner {
    /// The run's configuration.
    pub cfg: TrainConfig,
    /// The policy being trained.
    pub policy: Policy,
    /// The frozen reference policy of the `ref_kl` penalty, if any.
    pub reference: Option<Reference>,
    /// The entropy control (Clip-Cov, KL-Cov, ...).
    pub control: Box<dyn EntropyControl>,
    /// AdamW over the trainable parameters.
    pub opt: AdamW,
    /// The data-parallel process group ([`crate::dist::Single`]: this process alone).
    pub comm: Box<dyn Collective>,
}

impl Learner {
    /// The policy's device.
    pub fn device(&self) -> tch::Device {
        self.policy.model.device()
    }

    /// How micro-batches of `rows_per_micro_batch` rows, or the token budget, form.
    pub fn micro_batching(&self, rows_per_micro_batch: usize) -> MicroBatching {
        match self.cfg.max_tokens_per_micro_batch {
            Some(tokens) => MicroBatching::Tokens(tokens),
            None => MicroBatching::Rows(rows_per_micro_batch),
        }
    }

    /// The error of a `ref_kl` run without a reference policy.
    pub fn missing_reference(&self) -> super::TrainError {
        super::TrainError::Config(crate::config::ConfigError::Invalid {
            path: "<config>".into(),
            field: "trainer.ref_kl",
            why: "set, but the trainer has no reference policy (Trainer::with_reference, or \
                  Trainer::with_adapter_base_reference under LoRA)"
                .into(),
        })
    }

    /// Fails before any work when `ref_kl` is set without a reference policy.
    pub fn check_reference(&self) -> Result<(), super::TrainError> {
        if self.cfg.ref_kl.is_some() && self.reference.is_none() {
            return Err(self.missing_reference());
        }
        Ok(())
    }

    /// Whether this process writes the run's files (rank 0).
    pub fn is_main_rank(&self) -> bool {
        self.comm.rank() == 0
    }

    /// Optimizer steps of the whole run (the learning-rate schedule's length).
    pub fn total_optimizer_steps(&self) -> usize {
        let c = &self.cfg;
        let per_step = (c.prompts_per_step * c.group_size).div_ceil(c.mini_batch_size);
        c.steps as usize * per_step * c.ppo_epochs
    }
}
