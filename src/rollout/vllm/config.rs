//! `[trainer.rollout.vllm]`: where the vLLM server is (or how Cove starts one), and how
//! weights reach it.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Which engine samples the rollouts: `trainer.rollout.engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    /// Cove's own KV-cached sampler on the policy being trained, in process.
    #[default]
    Local,
    /// A vLLM server over HTTP ([`super::VllmEngine`]), with the weights pushed after
    /// every optimizer step.
    Vllm,
}

/// `[trainer.rollout.vllm]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VllmConfig {
    /// Base URL of a running server (`http://host:port`), started with
    /// `VLLM_SERVER_DEV_MODE=1` (weight reloads go through its `/collective_rpc`),
    /// `PYTHONPATH` holding Cove's `python/` folder, `--worker-extension-cls
    /// cove_vllm_worker.CoveWorkerExtension`, `--served-model-name policy` and
    /// `--logprobs-mode processed_logprobs`. Exactly one of `url` and `launch`.
    pub url: Option<String>,
    /// Start `vllm serve` for the policy's model folder as a child process, wait until
    /// it is healthy, log it to `vllm.log` in the run folder and stop it at the end (and
    /// on Ctrl-C or a crash).
    pub launch: bool,
    /// The Python that runs the launched server (default: `.venv-vllm/bin/python` of
    /// the working directory, the one the set-up installs; else `python3`).
    pub python: Option<PathBuf>,
    /// Extra arguments for the launched server (`--max-model-len 4096`, ...).
    pub args: Vec<String>,
    /// Seconds to wait for the launched server to become healthy.
    pub startup_timeout_s: f64,
    /// Seconds one request may take (a whole rollout batch is many requests).
    pub request_timeout_s: f64,
    /// Requests in flight at once (vLLM batches them).
    pub max_concurrency: usize,
    /// The folder, seen by Cove and the server, that full weights are written to before
    /// each reload (default: `weights/` in the run folder).
    pub sync_dir: Option<PathBuf>,
    /// The largest gap between the server's and the trainer's log-probs of the probe
    /// tokens after a sync (mean absolute difference, nats) before the run stops;
    /// default 1e-3 in float32 (measured: about 1e-5 on SmolLM2), 5e-2 in bfloat16.
    pub probe_tolerance: Option<f64>,
}

impl Default for VllmConfig {
    fn default() -> Self {
        VllmConfig {
            url: None,
            launch: false,
            python: None,
            args: Vec::new(),
            startup_timeout_s: 600.0,
            request_timeout_s: 1800.0,
            max_concurrency: 64,
            sync_dir: None,
            probe_tolerance: None,
        }
    }
}

impl VllmConfig {
    /// Checks every field; the error names it (relative to `trainer`, as
    /// `rollout.vllm.url`) and says what is wrong.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.url.is_some() == self.launch {
            return Err((
                "rollout.vllm",
                "set exactly one of `url` (a running server) and `launch = true`".into(),
            ));
        }
        if let Some(url) = &self.url
            && !url.starts_with("http://")
        {
            return Err(("rollout.vllm.url", format!("{url:?} is not an http:// URL")));
        }
        if self.max_concurrency == 0 {
            return Err(("rollout.vllm.max_concurrency", "must be at least 1".into()));
        }
        for (field, v) in [
            ("rollout.vllm.startup_timeout_s", self.startup_timeout_s),
            ("rollout.vllm.request_timeout_s", self.request_timeout_s),
            (
                "rollout.vllm.probe_tolerance",
                self.probe_tolerance.unwrap_or(1.0),
            ),
        ] {
            if !(v > 0.0 && v.is_finite()) {
                return Err((field, "must be finite and > 0".into()));
            }
        }
        Ok(())
    }
}
