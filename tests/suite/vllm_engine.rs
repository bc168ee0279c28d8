//! Rollouts on a real vLLM server (the CPU build the set-up installs into `.venv-vllm`)
//! on SmolLM2-135M-Instruct: token ids and log-probs against Cove's own forward, weight
//! sync after a step, `train-math` with `engine = "vllm"` (synchronous, and asynchronous
//! with a killed server and a resume).
//!
//! One server, launched once, serves the library tests and the synchronous run; the
//! tests that use it hold [`server`]'s lock (each loads the weights it needs first).

use crate::learner_common::{Digits, dataset, small_config};
use crate::model_smollm2::{model_dir, policy};
use crate::test_util::run_binary;
use cove::model::{LogprobOptions, PackedItem, Policy, packed_response_logprobs};
use cove::rollout::remote::probe_logprobs;
use cove::rollout::{
    FinishReason, RemoteEngine, RolloutError, RolloutRequest, SamplingConfig, Trajectory,
    VllmConfig, VllmEngine, WeightUpdate,
};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Arguments for every launched test server: no graph compilation (starts in about
/// 30 s on 2 cores instead of about 2 minutes), a short context.
const SERVER_ARGS: [&str; 3] = ["--enforce-eager", "--max-model-len", "1024"];

/// The shared server, locked for the calling test.
fn server() -> MutexGuard<'static, VllmEngine> {
    static SERVER: OnceLock<Mutex<VllmEngine>> = OnceLock::new();
    static LOG_DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let engine = SERVER.get_or_init(|| {
        let log = LOG_DIR
            .get_or_init(|| tempfile::tempdir().unwrap())
            .path()
            .join("vllm.log");
        // Launched from a thread that lives as long as the test process: the server gets
        // SIGTERM when the thread that started it ends.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let cfg = VllmConfig {
                launch: true,
                args: SERVER_ARGS.map(String::from).to_vec(),
                ..VllmConfig::default()
            };
            let eos = policy().eos_token_ids;
            let _ = tx.send(VllmEngine::start(&cfg, &model_dir(), "float32", &log, eos));
            loop {
                std::thread::park();
            }
        });
        let engine = rx
            .recv()
            .unwrap()
            .unwrap_or_else(|e| panic!("launching the test's vLLM server: {e}"));
        Mutex::new(engine)
    });
    engine
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The chat-templated ids of `text`.
fn prompt(policy: &Policy, text: &str) -> Vec<i64> {
    policy
        .prompt_ids(&cove::data::Prompt::from(text).messages(), true)
        .unwrap()
}

/// `policy`'s log-probs of each trajectory's response tokens at `temperature`.
fn cove_logprobs(policy: &Policy, t: &Trajectory, temperature: f64) -> Vec<f32> {
    let _guard = tch::no_grad_guard();
    let out = packed_response_logprobs(
        policy.model.as_ref(),
        &[PackedItem {
            prompt: t.prompt(),
            responses: vec![t.response()],
        }],
        false,
        &LogprobOptions {
            temperature,
            ..LogprobOptions::default()
        },
    )
    .unwrap();
    Vec::<f32>::try_from(&out.logprobs.get(0)).unwrap()
}

/// Largest and mean absolute difference.
fn gaps(a: &[f32], b: &[f32]) -> (f64, f64) {
    assert_eq!(a.len(), b.len());
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| (x - y).abs() as f64).collect();
    (
        d.iter().cloned().fold(0.0, f64::max),
        d.iter().sum::<f64>() / d.len().max(1) as f64,
    )
}

/// The server samples token ids whose log-probs (after temperature) are Cove's forward's
/// of the same sequences, with its finish reasons and texts; a prompt too long for the
/// server's context is refused by name.
#[test]
fn vllm_samples_token_ids_with_coves_logprobs() {
    let policy = policy();
    let weights = tempfile::tempdir().unwrap();
    let mut engine = server();
    let ids = prompt(&policy, "What is 12 + 30?");
    engine
        .load(&WeightUpdate::publish(&policy, weights.path(), 0, &ids).unwrap())
        .unwrap();
    let prompts = vec![ids, prompt(&policy, "Name a prime number above 10.")];
    for temperature in [1.0, 0.7] {
        let sampling = SamplingConfig {
            n: 3,
            temperature,
            max_new_tokens: 24,
            seed: 5,
            ..SamplingConfig::default()
        };
        let request = RolloutRequest {
            prompts: &prompts,
            tasks: &[4, 9],
            keys: &[0, 1],
            sampling: &sampling,
            policy_version: 7,
        };
        let out = engine.generate(&request).unwrap();
        assert_eq!(out.len(), 6);
        let (mut worst, mut sum, mut tokens) = (0.0f64, 0.0, 0);
        for (i, t) in out.iter().enumerate() {
            t.check().unwrap();
            assert_eq!((t.group, t.task), (i / 3, [4, 9][i / 3]));
            assert_eq!(t.prompt(), &prompts[i / 3][..]);
            assert_eq!(t.policy_version, 7);
            assert!(t.response_mask().iter().all(|&m| m));
            match t.finish {
                FinishReason::Eos => {
                    assert!(policy.eos_token_ids.contains(t.response().last().unwrap()))
                }
                FinishReason::Length => assert_eq!(t.response().len(), 24),
                other => panic!("finish {other:?}"),
            }
            let mut shown = t.response().to_vec();
            if t.finish == FinishReason::Eos {
                shown.pop();
            }
            assert_eq!(t.text, policy.decode(&shown).unwrap(), "text of sample {i}");
            let served = t.logprobs.as_ref().unwrap();
            let (max, mean) = gaps(served, &cove_logprobs(&policy, t, temperature));
            worst = worst.max(max);
            sum += mean * served.len() as f64;
            tokens += served.len();
        }
        let mean = sum / tokens as f64;
        eprintln!(
            "vLLM vs Cove log-probs at T = {temperature}: {tokens} tokens, max gap {worst:.2e}, \
             mean gap {mean:.2e} nats"
        );
        assert!(
            worst < 5e-4 && mean < 5e-5,
            "max {worst:.2e}, mean {mean:.2e}"
        );
        // Same seeds, same samples.
        let again = engine.generate(&request).unwrap();
        let tokens_of = |v: &[Trajectory]| v.iter().map(|t| t.tokens.clone()).collect::<Vec<_>>();
        assert_eq!(tokens_of(&again), tokens_of(&out));
    }
    let long = vec![vec![1i64; 1000]];
    let sampling = SamplingConfig {
        max_new_tokens: 100,
        ..SamplingConfig::default()
    };
    let err = engine
        .generate(&RolloutRequest {
            prompts: &long,
            tasks: &[0],
            keys: &[0],
            sampling: &sampling,
            policy_version: 0,
        })
        .unwrap_err();
    assert!(
        matches!(&err, RolloutError::Config { field, .. } if field == "trainer.rollout.max_new_tokens"),
        "{err}"
    );
}

/// A shared server as a [`RemoteEngine`] a trainer can own.
struct Shared;

impl RemoteEngine for Shared {
    fn name(&self) -> String {
        server().name()
    }
    fn load(&mut self, update: &WeightUpdate) -> Result<(), RolloutError> {
        server().load(update)
    }
    fn generate(&mut self, request: &RolloutRequest) -> Result<Vec<Trajectory>, RolloutError> {
        server().generate(request)
    }
}

/// The lock of the tests that change the shared server's weights through a trainer
/// (the trainer's thread takes [`server`]'s lock per call).
fn weights_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// After a step, the trainer's updated policy is pushed to the server: the server's
/// log-probs then equal the trainer's (within the probe's bound) and differ from the
/// starting policy's by far more; the step measured the behaviour mismatch.
#[test]
fn after_a_step_and_a_sync_the_server_holds_the_updated_policy() {
    let _serial = weights_lock();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small_config(&dir.path().join("run"));
    cfg.steps = 1;
    cfg.prompts_per_step = 2;
    cfg.group_size = 4;
    cfg.mini_batch_size = 8;
    cfg.micro_batch_size = 8;
    cfg.rollout.max_new_tokens = 12;
    cfg.optim.lr = 1e-4;
    cfg.reuse_rollout_logprobs = false;
    cfg.loss.rollout_correction = Some(cove::loss::RolloutCorrection {
        kind: cove::loss::CorrectionKind::Tis,
        cap: 2.0,
    });
    let start = policy();
    let probe = prompt(&start, "What is 2 + 2? Answer with a number.");
    let before = probe_logprobs(&start, &probe).unwrap();
    let mut trainer = cove::trainer::Trainer::new(cfg, start, Digits, dataset())
        .unwrap()
        .with_remote_engine(Box::new(Shared))
        .unwrap();
    let m = trainer.step().unwrap();
    assert_eq!(m.policy_lag, 0);
    let kl = m.rollout_mismatch_kl.expect("the mismatch is measured");
    let max = m.rollout_ratio_max.unwrap();
    eprintln!("rollout_mismatch_kl {kl:.2e}, rollout_ratio_max {max:.4}");
    assert!(
        (0.0..1e-3).contains(&kl) && (1.0..1.1).contains(&max),
        "{kl} {max}"
    );
    assert!(m.seconds.weight_sync > 0.0, "{:?}", m.seconds);
    // Push the updated policy as the next step would, then read the server's log-probs.
    let weights = tempfile::tempdir().unwrap();
    let update = WeightUpdate::publish(trainer.policy(), weights.path(), 1, &probe).unwrap();
    let mut engine = server();
    engine.load(&update).unwrap();
    let served = engine.prompt_logprobs(&probe).unwrap();
    let (_, gap) = gaps(&served, &update.probe_logprobs);
    let (_, moved) = gaps(&update.probe_logprobs, &before);
    eprintln!("after the sync: server vs trainer {gap:.2e} nats, the step moved them {moved:.2e}");
    assert!(gap < 2e-4, "{gap}");
    assert!(
        moved > 20.0 * gap,
        "the step changed the policy too little to tell: {moved}"
    );
    assert_eq!(engine.loaded().map(|(v, _)| v), Some(1));
}

/// The `--set`s of a small SmolLM2 `train-math` run on vLLM.
fn vllm_sets(engine: &str) -> Vec<String> {
    [
        "trainer.prompts_per_step=2",
        "trainer.group_size=4",
        "trainer.mini_batch_size=8",
        "trainer.micro_batch_size=8",
        "trainer.rollout.max_new_tokens=16",
        "trainer.reuse_rollout_logprobs=false",
        "trainer.loss.rollout_correction={kind=\"tis\",cap=2.0}",
        "trainer.checkpoint.every=1",
        "data.eval_limit=2",
        "trainer.rollout.engine=\"vllm\"",
        engine,
    ]
    .map(String::from)
    .to_vec()
}

fn metrics(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn train_math(out: &Path, steps: u64, sets: &[String], resume: bool) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_train-math"));
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("LD_LIBRARY_PATH")
        .args(["--quiet", "--steps", &steps.to_string(), "--out"])
        .arg(out)
        .args(sets.iter().flat_map(|s| ["--set", s.as_str()]));
    if resume {
        command.arg("--resume");
    }
    command
}

/// `train-math` with `engine = "vllm"` at a running server's URL: two synchronous steps,
/// each pushing the weights first; the metrics carry the sync's seconds and the
/// behaviour mismatch, and no lag.
#[test]
fn train_math_trains_two_steps_on_a_vllm_server() {
    let _serial = weights_lock();
    let url = server().url().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let sets = vllm_sets(&format!("trainer.rollout.vllm.url=\"{url}\""));
    let args: Vec<String> = ["--quiet", "--steps", "2", "--out"]
        .map(String::from)
        .into_iter()
        .chain([out.display().to_string()])
        .chain(sets.iter().flat_map(|s| ["--set".to_string(), s.clone()]))
        .collect();
    let (ok, text) = run_binary(env!("CARGO_BIN_EXE_train-math"), &args);
    assert!(ok, "{text}");
    let m = metrics(&out);
    assert_eq!(m.len(), 2, "{text}");
    for line in &m {
        assert!(
            line["seconds"]["weight_sync"].as_f64().unwrap() > 0.0,
            "{line}"
        );
        assert!(
            line["rollout_mismatch_kl"].as_f64().unwrap() < 1e-3,
            "{line}"
        );
        assert!(
            line.get("policy_lag").is_none(),
            "synchronous: no lag, {line}"
        );
    }
}

/// The pids of the processes whose command line contains `pattern`.
fn pids_of(pattern: &str) -> Vec<i32> {
    let out = Command::new("pgrep")
        .args(["-f", pattern])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Asynchronous `train-math` (`max_staleness = 1`) on a server it launches: no batch
/// lags more than one version, and the steps after the first lag exactly one. Killing
/// the server mid-run ends the run with an error naming the server; `--resume` launches
/// a new one and finishes the run.
#[test]
fn an_async_run_lags_one_version_and_resumes_after_its_server_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let args = SERVER_ARGS.map(|a| format!("\"{a}\"")).join(",");
    let mut sets = vllm_sets("trainer.rollout.vllm.launch=true");
    sets.push(format!("trainer.rollout.vllm.args=[{args}]"));
    sets.push("trainer.async.max_staleness=1".into());
    let log = dir.path().join("first.log");
    let mut child = train_math(&out, 3, &sets, false)
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("first.err")).unwrap(),
        ))
        .spawn()
        .unwrap();
    // Kill the server once the first step is in the metrics.
    let pattern = out.join("weights").display().to_string();
    let start = Instant::now();
    while metrics(&out).is_empty() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its first step"
        );
        assert!(
            start.elapsed() < Duration::from_secs(900),
            "no step in 15 minutes"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let pids = pids_of(&pattern);
    assert!(
        !pids.is_empty(),
        "no server process has {pattern} in its command line"
    );
    for pid in pids {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let status = child.wait().unwrap();
    let err = std::fs::read_to_string(dir.path().join("first.err")).unwrap();
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("inference server http://127.0.0.1:"),
        "the error does not name the server:\n{err}"
    );
    let done = metrics(&out).len();
    assert!((1..3).contains(&done), "{done} steps before the kill");
    let output = train_math(&out, 3, &sets, true).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    let m = metrics(&out);
    assert_eq!(m.len(), 3, "{text}");
    let lags: Vec<u64> = m
        .iter()
        .map(|l| l["policy_lag"].as_u64().unwrap_or(0))
        .collect();
    eprintln!("policy_lag per step {lags:?} (killed after step {done})");
    assert_eq!(lags[0], 0);
    assert!(lags.iter().all(|&l| l <= 1), "{lags:?}");
    // Every step but the first of each process lags exactly one version.
    let firsts = [0, done];
    for (i, &lag) in lags.iter().enumerate() {
        assert_eq!(
            lag,
            u64::from(!firsts.contains(&i)),
            "step {}: {lags:?}",
            i + 1
        );
    }
    assert!(
        pids_of(&pattern).is_empty(),
        "the resumed run left its server running"
    );
}
