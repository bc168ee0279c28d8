//! A `vllm serve` child process (`[trainer.rollout.vllm] launch = true`): started for a
//! model folder on a free local port with Cove's worker extension, waited on until
//! healthy, logged to a file, and
//! stopped with its whole process group when dropped. It also receives SIGTERM if the
//! trainer dies without dropping it (Linux's parent-death signal), so no server outlives
//! a crashed or killed run.

use super::super::RolloutError;
use super::config::VllmConfig;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The served model's name in requests.
pub const SERVED_MODEL: &str = "policy";

/// The worker extension Cove ships (`python/cove_vllm_worker.py`), written beside the
/// log of a launched server and put on its `PYTHONPATH`.
pub const WORKER_EXTENSION: &str = include_str!("../../../python/cove_vllm_worker.py");

/// The `--worker-extension-cls` value naming [`WORKER_EXTENSION`]'s class.
pub const WORKER_EXTENSION_CLASS: &str = "cove_vllm_worker.CoveWorkerExtension";

/// A running `vllm serve` child.
pub struct VllmServer {
    child: Child,
    url: String,
    log: PathBuf,
}

impl VllmServer {
    /// Starts the server for `model_dir` in `dtype` (`float32` or `bfloat16`), writing
    /// its output to `log`, and waits until `/health` answers (or the child exits, or
    /// `startup_timeout_s` passes: the error quotes the log's tail).
    pub fn launch(
        cfg: &VllmConfig,
        model_dir: &Path,
        dtype: &str,
        log: &Path,
    ) -> Result<VllmServer, RolloutError> {
        let port = free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let fail = |message: String| RolloutError::Server {
            url: url.clone(),
            message,
        };
        let python = cfg.python.clone().unwrap_or_else(default_python);
        let out = std::fs::File::create(log)
            .map_err(|e| fail(format!("creating its log {}: {e}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(|e| fail(format!("{}: {e}", log.display())))?;
        let ext_dir = log.with_file_name("vllm-extension");
        std::fs::create_dir_all(&ext_dir)
            .and_then(|()| std::fs::write(ext_dir.join("cove_vllm_worker.py"), WORKER_EXTENSION))
            .map_err(|e| fail(format!("writing the worker extension: {e}")))?;
        let python_path = match std::env::var_os("PYTHONPATH") {
            Some(rest) => {
                let mut paths = vec![ext_dir.clone()];
                paths.extend(std::env::split_paths(&rest));
                std::env::join_paths(paths).map_err(|e| fail(format!("PYTHONPATH: {e}")))?
            }
            None => ext_dir.clone().into_os_string(),
        };
        let mut command = Command::new(&python);
        command
            .args(["-m", "vllm.entrypoints.openai.api_server", "--model"])
            .arg(model_dir)
            .args(["--served-model-name", SERVED_MODEL])
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--dtype", dtype])
            .args(["--logprobs-mode", "processed_logprobs"])
            .args(["--worker-extension-cls", WORKER_EXTENSION_CLASS])
            .args(&cfg.args)
            .env("VLLM_SERVER_DEV_MODE", "1")
            .env("HF_HUB_OFFLINE", "1")
            .env("PYTHONPATH", python_path)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; the closure allocates nothing.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        // vLLM's CPU backend otherwise reserves most of the machine's memory for its KV
        // cache; 2 GiB unless the user says otherwise.
        if std::env::var_os("VLLM_CPU_KVCACHE_SPACE").is_none() {
            command.env("VLLM_CPU_KVCACHE_SPACE", "2");
        }
        let child = command.spawn().map_err(|e| {
            fail(format!(
                "starting {} -m vllm.entrypoints.openai.api_server: {e} (the set-up installs \
                 vLLM into .venv-vllm; [trainer.rollout.vllm] python names another)",
                python.display()
            ))
        })?;
        let mut server = VllmServer {
            child,
            url: url.clone(),
            log: log.to_path_buf(),
        };
        server.wait_healthy(Duration::from_secs_f64(cfg.startup_timeout_s))?;
        Ok(server)
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn wait_healthy(&mut self, timeout: Duration) -> Result<(), RolloutError> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .http_status_as_error(false)
            .build()
            .into();
        let start = Instant::now();
        let health = format!("{}/health", self.url);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.failed(format!("exited ({status}) while starting")));
            }
            if let Ok(reply) = agent.get(&health).call()
                && reply.status() == 200
            {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(self.failed(format!(
                    "not healthy after {:.0} s (startup_timeout_s)",
                    timeout.as_secs_f64()
                )));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// An error naming the server, with the last lines of its log.
    fn failed(&self, what: String) -> RolloutError {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        RolloutError::Server {
            url: self.url.clone(),
            message: format!(
                "vllm serve {what}; the end of {}:\n{tail}",
                self.log.display()
            ),
        }
    }
}

impl Drop for VllmServer {
    /// Stops the server's whole process group: SIGTERM, then SIGKILL after 15 s.
    fn drop(&mut self) {
        let group = -(self.child.id() as i32);
        // SAFETY: signalling our own child's process group.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Whatever of the group is left (the engine's worker processes included).
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// `.venv-vllm/bin/python` under the working directory when it exists (what the
/// set-up installs), else `python3`.
fn default_python() -> PathBuf {
    let venv = PathBuf::from(".venv-vllm/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// A local port that was free a moment ago.
fn free_port() -> Result<u16, RolloutError> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| RolloutError::Server {
            url: "127.0.0.1".into(),
            message: format!("finding a free port: {e}"),
        })?;
    Ok(listener
        .local_addr()
        .map_err(|e| RolloutError::Server {
            url: "127.0.0.1".into(),
            message: format!("finding a free port: {e}"),
        })?
        .port())
}
