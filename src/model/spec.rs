//! [`ModelSpec`]: the `[model]` section of a run's configuration, and how it becomes a
//! [`Policy`] on the right device.

use crate::dist::Launch;
use crate::model::Policy;
use std::path::PathBuf;

/// Which policy a training binary loads.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// `tiny` (the built-in tiny policy), a named model set-up installs
    /// (`smollm2-135m-instruct`; see [`crate::model::named`]), or a Hugging Face folder.
    pub path: String,
    /// Parameter dtype (`f32`, `bf16`, `f16`).
    pub dtype: crate::model::Dtype,
    /// `cpu`, `cuda` or `auto` (CUDA when available). Under a launcher, `cuda` means
    /// the GPU of the rank's local index (`cuda:LOCAL_RANK`); `cuda:N` names one.
    pub device: String,
    /// Initialisation seed of the tiny policy.
    pub tiny_seed: u64,
    /// Weights to load over the initial ones (a `.safetensors` written by the demo or
    /// a previous run), if any.
    pub weights: Option<PathBuf>,
    /// LoRA adapters (`[model.lora]`): when present, only they are trained and
    /// checkpoints hold them in PEFT's layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<crate::model::LoraConfig>,
}

impl ModelSpec {
    /// The libtorch device of the process `launch` describes: under a launcher each
    /// rank of a machine takes the GPU of its local index.
    pub fn device(&self, launch: &Launch) -> Result<tch::Device, String> {
        self.device_for(launch, tch::Cuda::device_count() as usize)
    }

    /// [`ModelSpec::device`] for rank `launch` on a machine with `gpus` GPUs: `cuda` is
    /// `cuda:LOCAL_RANK`, an error when the machine has fewer GPUs than local ranks.
    pub fn device_for(&self, launch: &Launch, gpus: usize) -> Result<tch::Device, String> {
        let local = launch.local_rank;
        let gpu = |index: usize| {
            if index < gpus {
                Ok(tch::Device::Cuda(index))
            } else {
                Err(format!(
                    "model.device: `{}` on local rank {local} of {} needs GPU {index}, but this \
                     machine has {gpus}",
                    self.device, launch.local_world_size
                ))
            }
        };
        match self.device.as_str() {
            "cpu" => Ok(tch::Device::Cpu),
            "cuda" => gpu(local),
            "auto" if gpus == 0 => Ok(tch::Device::Cpu),
            "auto" => gpu(local),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(index)) => gpu(index),
                _ => Err(format!(
                    "model.device: `{other}` is not cpu, cuda, cuda:N or auto"
                )),
            },
        }
    }

    /// Builds or loads the policy onto the device of the process `launch` describes.
    pub fn load(&self, launch: &Launch) -> Result<Policy, Box<dyn std::error::Error>> {
        let device = self.device(launch)?;
        use crate::model::named::{ModelSource, resolve};
        let mut policy = match resolve(&self.path).map_err(|e| format!("model.path: {e}"))? {
            ModelSource::Tiny => crate::model::tiny::policy(
                &crate::model::tiny::TinyConfig::default(),
                self.tiny_seed,
                device,
            )?,
            ModelSource::Folder(dir) => Policy::from_hf_dir(&dir, self.dtype, device)?,
        };
        if let Some(weights) = &self.weights {
            policy
                .model
                .var_store_mut()
                .load(weights)
                .map_err(|e| format!("{}: {e}", weights.display()))?;
        }
        if let Some(lora) = &self.lora {
            lora.validate()?;
            policy.model.attach_lora(lora, &self.base_model_name())?;
        }
        Ok(policy)
    }

    /// The base model as an adapter's `base_model_name_or_path` records it: the model
    /// name as given, or a folder as an absolute path (so `cove merge-lora` finds it
    /// from anywhere).
    pub fn base_model_name(&self) -> String {
        use crate::model::named::{ModelSource, NAMED_MODELS, TINY, resolve};
        let named = self.path == TINY || NAMED_MODELS.iter().any(|m| m.name == self.path);
        match resolve(&self.path) {
            Ok(ModelSource::Folder(dir)) if !named => std::path::absolute(&dir)
                .unwrap_or(dir)
                .display()
                .to_string(),
            _ => self.path.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A torchrun-style launcher environment: local rank `local` of `locals` on this
    /// machine.
    fn launch(local: usize, locals: usize) -> Launch {
        let vars = [
            ("RANK", local),
            ("WORLD_SIZE", locals),
            ("LOCAL_RANK", local),
            ("LOCAL_WORLD_SIZE", locals),
        ];
        Launch::from_vars(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        })
        .unwrap()
    }

    fn spec(device: &str) -> ModelSpec {
        toml::from_str(&format!(
            "path = \"tiny\"\ndtype = \"f32\"\ndevice = \"{device}\"\ntiny_seed = 0\n"
        ))
        .unwrap()
    }

    #[test]
    fn cuda_is_the_gpu_of_the_local_rank() {
        use tch::Device::{Cpu, Cuda};
        assert_eq!(spec("cuda").device_for(&launch(1, 2), 2), Ok(Cuda(1)));
        assert_eq!(spec("cuda").device_for(&launch(0, 2), 2), Ok(Cuda(0)));
        assert_eq!(spec("auto").device_for(&launch(1, 2), 2), Ok(Cuda(1)));
        assert_eq!(spec("auto").device_for(&launch(1, 2), 0), Ok(Cpu));
        assert_eq!(spec("cpu").device_for(&launch(1, 2), 2), Ok(Cpu));
        assert_eq!(spec("cuda:0").device_for(&launch(1, 2), 2), Ok(Cuda(0)));
        let err = spec("cuda").device_for(&launch(2, 4), 2).unwrap_err();
        assert!(
            err.contains("local rank 2 of 4 needs GPU 2, but this machine has 2"),
            "{err}"
        );
        let err = spec("gpu").device_for(&launch(0, 1), 1).unwrap_err();
        assert!(
            err.contains("`gpu` is not cpu, cuda, cuda:N or auto"),
            "{err}"
        );
    }
}
