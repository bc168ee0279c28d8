//! Rollouts on a vLLM server over HTTP (its OpenAI-compatible `/v1/completions`).
//!
//! - **Token ids in, token ids out.** Each prompt goes as token ids
//!   (`prompt: [ids]`); each sample comes back as `token_ids` with the log-prob of every
//!   sampled token (`logprobs: 0`), so nothing is decoded and encoded again. The EOS
//!   token, when produced, is kept as the last token, as Cove's sampler does.
//! - **Sampling maps one to one**: `n`, `temperature`, `top_p`, `top_k`,
//!   `max_tokens`, `stop`, and a seed per prompt from the request's random-stream key
//!   (vLLM gives the `j`-th sample `seed + j`). A prompt longer than the server's
//!   `max_model_len` allows with `max_new_tokens` is refused by name before sampling.
//! - **Log-probs are the sampling distribution's** (after temperature): a launched
//!   server runs with `--logprobs-mode processed_logprobs`, and the probe after each
//!   weight load catches a server that does not.
//! - **Weights** ([`RemoteEngine::load`]): the trainer writes the policy as a Hugging Face
//!   folder ([`super::WeightUpdate::publish`]); the engine asks the server to reload
//!   from it in place through `/collective_rpc` (which needs `VLLM_SERVER_DEV_MODE=1`):
//!   vLLM's own `reload_weights`, wrapped by the worker extension Cove ships
//!   (`python/cove_vllm_worker.py`), which re-ties and re-packs a tied output head that
//!   the reload leaves stale on the CPU backend. It then resets the prefix cache (cached
//!   prompts hold the old weights' keys and values), scores the probe tokens and
//!   compares them with the trainer's log-probs.

pub mod config;
pub mod server;

pub use config::{EngineKind, VllmConfig};
pub use server::{SERVED_MODEL, VllmServer};

use super::remote::{RemoteEngine, WeightUpdate};
use super::{FinishReason, RolloutError, RolloutRequest, Trajectory};
use crate::seed::mix_seed;
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A vLLM server as a [`RemoteEngine`]: one it launched ([`VllmServer`], stopped when
/// the engine is dropped) or one at a URL.
pub struct VllmEngine {
    url: String,
    agent: ureq::Agent,
    max_concurrency: usize,
    probe_tolerance: f64,
    /// The server's `max_model_len`.
    max_model_len: Option<usize>,
    /// The EOS token ids of the model (a `stop` finish ending in one is EOS).
    eos: Vec<i64>,
    /// The version last loaded, and the gap its probe showed.
    loaded: Option<(u64, f64)>,
    /// A launched server, held so that dropping the engine stops it.
    _server: Option<VllmServer>,
}

/// The trajectories of one prompt, or why they are missing.
type Sampled = Result<Vec<Trajectory>, RolloutError>;

/// One sample of a `/v1/completions` reply.
#[derive(Deserialize)]
struct Choice {
    index: usize,
    text: String,
    token_ids: Option<Vec<i64>>,
    logprobs: Option<ChoiceLogprobs>,
    finish_reason: Option<String>,
    stop_reason: Option<Value>,
}

#[derive(Deserialize)]
struct ChoiceLogprobs {
    token_logprobs: Vec<Option<f64>>,
}

impl VllmEngine {
    /// Connects to `cfg.url`, or launches a server for `model_dir` (`dtype`: `float32`
    /// or `bfloat16`) logging to `log`; `eos` are the model's EOS token ids. Checks `cfg`
    /// first ([`VllmConfig::check`]) and reads the server's `max_model_len`.
    pub fn start(
        cfg: &VllmConfig,
        model_dir: &Path,
        dtype: &str,
        log: &Path,
        eos: Vec<i64>,
    ) -> Result<VllmEngine, RolloutError> {
        cfg.check()
            .map_err(|(field, message)| RolloutError::Config {
                field: format!("trainer.{field}"),
                message,
            })?;
        let (url, server) = match &cfg.url {
            Some(url) => (url.trim_end_matches('/').to_string(), None),
            None => {
                let server = VllmServer::launch(cfg, model_dir, dtype, log)?;
                (server.url().to_string(), Some(server))
            }
        };
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs_f64(cfg.request_timeout_s)))
            .http_status_as_error(false)
            .build()
            .into();
        let mut engine = VllmEngine {
            url,
            agent,
            max_concurrency: cfg.max_concurrency.max(1),
            probe_tolerance: cfg.probe_tolerance.unwrap_or(match dtype {
                "float32" => 1e-3,
                _ => 5e-2,
            }),
            max_model_len: None,
            eos,
            loaded: None,
            _server: server,
        };
        let models = engine.call("GET", "/v1/models", None)?;
        engine.max_model_len = models["data"][0]["max_model_len"]
            .as_u64()
            .map(|n| n as usize);
        Ok(engine)
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The version last loaded and the mean absolute gap (nats) between the server's
    /// probe log-probs and the trainer's after loading it.
    pub fn loaded(&self) -> Option<(u64, f64)> {
        self.loaded
    }

    /// The server's log-probs (temperature 1) of `ids[1..]`, each given the tokens
    /// before it (`prompt_logprobs`).
    pub fn prompt_logprobs(&self, ids: &[i64]) -> Result<Vec<f32>, RolloutError> {
        let reply = self.call(
            "POST",
            "/v1/completions",
            Some(json!({
                "model": SERVED_MODEL,
                "prompt": ids,
                "max_tokens": 1,
                "temperature": 1.0,
                "prompt_logprobs": 0,
                "return_token_ids": true,
            })),
        )?;
        let entries = reply["choices"][0]["prompt_logprobs"]
            .as_array()
            .ok_or_else(|| self.error("the reply has no prompt_logprobs".into()))?;
        ids.iter()
            .enumerate()
            .skip(1)
            .map(|(i, id)| {
                entries
                    .get(i)
                    .and_then(|e| e[id.to_string()]["logprob"].as_f64())
                    .map(|x| x as f32)
                    .ok_or_else(|| self.error(format!("no prompt log-prob for token {i}")))
            })
            .collect()
    }

    fn error(&self, message: String) -> RolloutError {
        RolloutError::Server {
            url: self.url.clone(),
            message,
        }
    }

    /// One request; a status other than 200 is an error quoting the reply.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, RolloutError> {
        let url = format!("{}{path}", self.url);
        let sent = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            (_, Some(body)) => self.agent.post(&url).send_json(body),
            (_, None) => self.agent.post(&url).send_empty(),
        };
        let mut reply =
            sent.map_err(|e| self.error(format!("{method} {path}: {e} (is the server up?)")))?;
        let status = reply.status().as_u16();
        let text = reply
            .body_mut()
            .read_to_string()
            .map_err(|e| self.error(format!("{method} {path}: reading the reply: {e}")))?;
        if status != 200 {
            let excerpt: String = text.chars().take(400).collect();
            let hint = if path == "/collective_rpc" {
                " (weight reloads need a server started with VLLM_SERVER_DEV_MODE=1, \
                 PYTHONPATH holding Cove's python/ folder and --worker-extension-cls \
                 cove_vllm_worker.CoveWorkerExtension)"
            } else {
                ""
            };
            return Err(self.error(format!("{method} {path}: HTTP {status}{hint}: {excerpt}")));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .map_err(|e| self.error(format!("{method} {path}: the reply is not JSON: {e}")))
    }

    /// The `/v1/completions` body of prompt `i` of `request`.
    fn body(&self, request: &RolloutRequest, i: usize) -> Value {
        let s = request.sampling;
        json!({
            "model": SERVED_MODEL,
            "prompt": request.prompts[i],
            "n": s.n,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "top_k": if s.top_k == 0 { -1 } else { s.top_k as i64 },
            "max_tokens": s.max_new_tokens,
            "stop": s.stop,
            "seed": mix_seed(s.seed, request.keys[i]) >> 2,
            "logprobs": 0,
            "return_token_ids": true,
            "skip_special_tokens": true,
        })
    }

    /// The `n` trajectories of prompt `i` from its reply.
    fn trajectories(
        &self,
        request: &RolloutRequest,
        i: usize,
        reply: Value,
    ) -> Result<Vec<Trajectory>, RolloutError> {
        let bad = |what: String| self.error(format!("prompt {i}: {what}"));
        let mut choices: Vec<Choice> = serde_json::from_value(reply["choices"].clone())
            .map_err(|e| bad(format!("unexpected reply: {e}")))?;
        choices.sort_by_key(|c| c.index);
        if choices.len() != request.sampling.n {
            return Err(bad(format!(
                "{} samples for n = {}",
                choices.len(),
                request.sampling.n
            )));
        }
        let prompt = &request.prompts[i];
        choices
            .into_iter()
            .map(|c| {
                let ids = c.token_ids.ok_or_else(|| bad("no token_ids".into()))?;
                let logprobs: Vec<f32> = c
                    .logprobs
                    .ok_or_else(|| bad("no logprobs".into()))?
                    .token_logprobs
                    .into_iter()
                    .map(|x| x.map(|x| x as f32))
                    .collect::<Option<_>>()
                    .ok_or_else(|| bad("a token without its log-prob".into()))?;
                if logprobs.len() != ids.len() {
                    return Err(bad(format!(
                        "{} log-probs for {} tokens",
                        logprobs.len(),
                        ids.len()
                    )));
                }
                let finish = match (c.finish_reason.as_deref(), &c.stop_reason) {
                    (Some("length"), _) => FinishReason::Length,
                    (Some("stop"), Some(Value::String(_))) => FinishReason::Stop,
                    (Some("stop"), _) => FinishReason::Eos,
                    (other, _) => return Err(bad(format!("finish_reason {other:?}"))),
                };
                let mut tokens = prompt.clone();
                tokens.extend(&ids);
                let mut loss_mask = vec![false; prompt.len()];
                loss_mask.extend(std::iter::repeat_n(true, ids.len()));
                Ok(Trajectory {
                    task: request.tasks[i],
                    group: i,
                    tokens,
                    prompt_len: prompt.len(),
                    loss_mask,
                    logprobs: Some(logprobs),
                    entropies: None,
                    policy_version: request.policy_version,
                    text: c.text,
                    score: None,
                    finish,
                    episode: None,
                })
            })
            .collect()
    }

    /// Refuses a request the server cannot honour, naming the setting.
    fn check(&self, request: &RolloutRequest) -> Result<(), RolloutError> {
        request.check_tasks()?;
        request.sampling.validate()?;
        if let Some(limit) = self.max_model_len {
            let longest = request.prompts.iter().map(Vec::len).max().unwrap_or(0);
            if longest + request.sampling.max_new_tokens > limit {
                return Err(RolloutError::Config {
                    field: "trainer.rollout.max_new_tokens".into(),
                    message: format!(
                        "{} new tokens after a {longest}-token prompt exceed the vLLM \
                         server's max_model_len = {limit} (raise it with --max-model-len \
                         in [trainer.rollout.vllm] args)",
                        request.sampling.max_new_tokens
                    ),
                });
            }
        }
        if self.eos.is_empty() {
            return Err(self.error("the model has no EOS token".into()));
        }
        Ok(())
    }
}

impl RemoteEngine for VllmEngine {
    fn name(&self) -> String {
        format!("vllm at {}", self.url)
    }

    fn load(&mut self, update: &WeightUpdate) -> Result<(), RolloutError> {
        let dir = std::fs::canonicalize(&update.dir)
            .map_err(|e| self.error(format!("{}: {e}", update.dir.display())))?;
        self.call(
            "POST",
            "/collective_rpc",
            Some(json!({
                "method": "cove_reload_weights",
                "kwargs": {"weights_path": dir.to_string_lossy()},
            })),
        )?;
        self.call("POST", "/reset_prefix_cache", None)?;
        let served = self.prompt_logprobs(&update.probe)?;
        let gap = served
            .iter()
            .zip(&update.probe_logprobs)
            .map(|(a, b)| (a - b).abs() as f64)
            .sum::<f64>()
            / served.len().max(1) as f64;
        if gap.is_nan() || gap > self.probe_tolerance {
            return Err(self.error(format!(
                "after loading the weights of version {} from {}, its log-probs of the \
                 {} probe tokens differ from the trainer's by {gap:.3e} nats on average \
                 (probe_tolerance = {:.1e}): the server does not hold the trained policy \
                 (another model, dtype or logprobs mode?)",
                update.version,
                dir.display(),
                served.len(),
                self.probe_tolerance
            )));
        }
        self.loaded = Some((update.version, gap));
        remove_older_versions(&dir, update.version);
        Ok(())
    }

    fn generate(&mut self, request: &RolloutRequest) -> Result<Vec<Trajectory>, RolloutError> {
        self.check(request)?;
        let n = request.prompts.len();
        let results: Vec<Mutex<Option<Sampled>>> = (0..n).map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let engine = &*self;
        std::thread::scope(|scope| {
            for _ in 0..engine.max_concurrency.min(n) {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        let out = engine
                            .call("POST", "/v1/completions", Some(engine.body(request, i)))
                            .and_then(|reply| engine.trajectories(request, i, reply));
                        let failed = out.is_err();
                        *results[i].lock().expect("a result slot") = Some(out);
                        if failed {
                            // Later prompts are not sent once one has failed.
                            next.store(n, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        let mut trajectories = Vec::with_capacity(n * request.sampling.n);
        for slot in results {
            match slot.into_inner().expect("a result slot") {
                Some(out) => trajectories.extend(out?),
                None => {
                    return Err(self.error("a request was not sent after another failed".into()));
                }
            }
        }
        Ok(trajectories)
    }
}

/// Removes the `v{n}` folders beside `dir` with `n < version` (weights no server needs).
fn remove_older_versions(dir: &Path, version: u64) {
    let Some(parent) = dir.parent() else { return };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let older = name
            .to_str()
            .and_then(|n| n.strip_prefix('v'))
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n < version);
        if older {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
