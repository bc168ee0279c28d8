//! Data parallelism with real processes under `mpirun -n 2` (OpenMPI, installed by
//! set-up). The equivalence runs start this test binary's own rank tests (ignored
//! unless a parent test starts them), so the trainer can use the learner tests'
//! digits reward: two ranks must make the single-process update and select the same
//! tokens. The failure test runs `train-math` itself: a rank that hangs or dies must
//! stop the job with an error naming it, and the run must resume to the uninterrupted
//! result.

use crate::learner_common::{Digits, dataset, small_config};
use cove::config::TrainConfig;
use cove::optim::Precision;
use cove::trainer::Trainer;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tch::Tensor;

const TRAIN_MATH: &str = env!("CARGO_BIN_EXE_train-math");

/// The tiny model on the bundled math set: 4 prompts x 8 responses per step, two
/// optimizer mini-batches of 16 rows (the second selects from the current policy:
/// its log-probs are gathered from both ranks, and earlier micro-batches get the
/// correction pass), micro-batches of 4. AdamW's eps = 1 makes the update nearly
/// linear in the gradient (`lr * g / (|g| + 1)`), so parameters compare gradients:
/// with eps = 1e-8 a gradient that cancels to about 0 moves its weight by about
/// `±lr` whichever way rounding tips it.
fn sets(control: &[&str], steps: u64, out: &Path) -> Vec<String> {
    let mut sets: Vec<String> = [
        "model.path=\"tiny\"",
        "model.device=\"cpu\"",
        "data.eval_limit=2",
        "run.threads=1",
        "trainer.prompts_per_step=4",
        "trainer.group_size=8",
        "trainer.mini_batch_size=16",
        "trainer.micro_batch_size=4",
        "trainer.rollout.max_new_tokens=12",
        "trainer.optim.lr=0.01",
        "trainer.optim.eps=1.0",
        "trainer.checkpoint.every=1",
        "trainer.checkpoint.keep=10",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    sets.extend(control.iter().map(|s| format!("trainer.loss.control.{s}")));
    sets.push(format!("trainer.steps={steps}"));
    sets.push(format!(
        "trainer.out_dir={}",
        toml::Value::String(out.display().to_string())
    ));
    sets
}

/// `program` alone (`ranks == 1`) or under `mpirun -n ranks` (as root, on a box with
/// fewer cores than ranks, unbound).
fn launch(ranks: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
    if ranks == 1 {
        return Command::new(program);
    }
    let mut c = Command::new("mpirun");
    c.args([
        "--allow-run-as-root",
        "--oversubscribe",
        "--bind-to",
        "none",
    ])
    .args(["-n", &ranks.to_string()])
    .arg(program);
    c
}

/// `train-math` with `sets` on `ranks` processes, from the repository root (the
/// defaults name `datasets/...`).
fn command(ranks: usize, sets: &[String]) -> Command {
    let mut cmd = launch(ranks, TRAIN_MATH);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("--quiet")
        .args(sets.iter().flat_map(|s| ["--set", s.as_str()]))
        .env_remove("LD_LIBRARY_PATH");
    cmd
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs to the end; panics with the output on failure.
fn train(ranks: usize, sets: &[String]) {
    let output = command(ranks, sets)
        .output()
        .expect("mpirun (scripts/setup.sh installs OpenMPI) and train-math start");
    assert!(
        output.status.success(),
        "{ranks} rank(s) failed:\n{}",
        text(&output)
    );
}

/// The run's metrics lines.
fn metrics(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The model weights of the run's newest checkpoint, by name.
fn final_weights(out: &Path) -> Vec<(String, Tensor)> {
    let dir = out.join("checkpoints");
    let newest = cove::checkpoint::latest(&dir)
        .unwrap()
        .expect("a checkpoint");
    let (_, mut model, _) = cove::checkpoint::load(&newest).unwrap();
    model.sort_by(|a, b| a.0.cmp(&b.0));
    model
}

/// The tiny policy's initial weights (`model.tiny_seed = 0`) by name, or with `lora`
/// its initial adapters (what a LoRA checkpoint holds).
fn initial_weights(lora: bool) -> Vec<(String, Tensor)> {
    let mut p = cove::model::tiny::policy(&Default::default(), 0, tch::Device::Cpu).unwrap();
    if lora {
        p.model.attach_lora(&lora_config(), "tiny").unwrap();
    }
    let mut v = p
        .model
        .var_store()
        .variables()
        .into_iter()
        .filter(|(name, _)| !lora || name.starts_with(cove::model::lora::PEFT_PREFIX))
        .collect::<Vec<_>>();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Max |Δ| between two runs' updates from `init` beyond the last bit of the weights, and
/// the largest update.
fn update_gap(
    init: &[(String, Tensor)],
    a: &[(String, Tensor)],
    b: &[(String, Tensor)],
) -> (f64, f64) {
    let (mut gap, mut largest) = (0.0f64, 0.0f64);
    assert_eq!(a.len(), init.len());
    for ((name, i), ((na, a), (nb, b))) in init.iter().zip(a.iter().zip(b)) {
        assert_eq!((name, name), (na, nb));
        let (ua, ub) = (a - i, b - i);
        // Updates are differences of stored f32 weights, so two equal updates may still
        // differ by the last bit of the weights they were added to: that much is not a
        // gap (seen on an AVX2-only box: 2^-23 on weights near 1).
        let last_bit = a.abs().maximum(&b.abs()) * f64::from(f32::EPSILON);
        let beyond = ((&ua - &ub).abs() - last_bit).clamp_min(0.0);
        gap = gap.max(beyond.max().double_value(&[]));
        largest = largest.max(ua.abs().max().double_value(&[]));
    }
    (gap, largest)
}

/// The configuration the equivalence runs train: the learner tests' small set-up (the
/// tiny policy rewarded for digits, 4 prompts x 8 responses, two mini-batches of 16:
/// the second selects from the current policy, so its log-probs are gathered from both
/// ranks and earlier micro-batches get the correction pass), with micro-batches of 4.
/// AdamW's eps = 1 makes the update nearly linear in the gradient, so parameters
/// compare gradients (see `learner_packing`).
fn small_dp_config(out: &Path, control: cove::loss::ControlConfig) -> TrainConfig {
    let mut cfg = small_config(out);
    cfg.steps = 2;
    cfg.micro_batch_size = 4;
    cfg.optim.lr = 0.05;
    cfg.optim.eps = 1.0;
    cfg.optim.grad_clip = None;
    cfg.loss.control = control;
    cfg.checkpoint.every = 1;
    cfg
}

/// The adapters of the LoRA case (dropout 0: with dropout each rank draws its own masks).
fn lora_config() -> cove::model::lora::LoraConfig {
    cove::model::lora::LoraConfig {
        rank: 4,
        alpha: 8.0,
        ..Default::default()
    }
}

/// One rank of a run of the learner tests' trainer: started by the tests below (alone,
/// or by `mpirun`) with `COVE_DP_CONFIG` naming a trainer TOML (and `COVE_DP_LORA` set
/// for adapters, `COVE_DP_SEED_BY_RANK` for a tiny policy seeded by the rank); joins
/// the job the environment describes, resumes, trains. Without the variable it does
/// nothing.
#[test]
#[ignore = "one rank of a data-parallel test; they start it"]
fn data_parallel_rank() {
    let Ok(path) = std::env::var("COVE_DP_CONFIG") else {
        return;
    };
    tch::set_num_threads(1);
    let cfg = TrainConfig::load(Path::new(&path)).unwrap();
    let timeout = Duration::from_secs_f64(cfg.dist.timeout_s);
    let launch = cove::dist::Launch::from_env().unwrap();
    let seed = match std::env::var_os("COVE_DP_SEED_BY_RANK") {
        Some(_) => launch.rank as u64,
        None => 0,
    };
    let comm = launch.connect(timeout).unwrap();
    let mut policy =
        cove::model::tiny::policy(&Default::default(), seed, tch::Device::Cpu).unwrap();
    if std::env::var_os("COVE_DP_LORA").is_some() {
        policy.model.attach_lora(&lora_config(), "tiny").unwrap();
    }
    let mut t = Trainer::new(cfg, policy, Digits, dataset())
        .unwrap()
        .with_collective(comm)
        .unwrap();
    t.resume().unwrap();
    if let Err(e) = t.run(|_| std::ops::ControlFlow::Continue(())) {
        eprintln!("rank {}: {e}", t.collective().rank());
        std::process::exit(1);
    }
}

/// Runs [`data_parallel_rank`] on `ranks` processes with `cfg` and the extra
/// environment `env`; returns the job's output.
fn rank_job(ranks: usize, cfg: &TrainConfig, env: &[(&str, &str)]) -> Output {
    let path = cfg.out_dir.with_extension("toml");
    std::fs::write(&path, toml::to_string(cfg).unwrap()).unwrap();
    launch(ranks, std::env::current_exe().unwrap())
        .args(["--exact", "data_parallel::data_parallel_rank", "--ignored"])
        .args(["--nocapture", "--test-threads", "1"])
        .env("COVE_DP_CONFIG", &path)
        .envs(env.iter().copied())
        .output()
        .expect("mpirun (scripts/setup.sh installs OpenMPI) starts")
}

/// Runs [`data_parallel_rank`] on `ranks` processes with `cfg` (with adapters when
/// `lora`) to the end.
fn train_ranks(ranks: usize, cfg: &TrainConfig, lora: bool) {
    let env: &[(&str, &str)] = if lora { &[("COVE_DP_LORA", "1")] } else { &[] };
    let output = rank_job(ranks, cfg, env);
    assert!(
        output.status.success(),
        "{ranks} rank(s) failed:\n{}",
        text(&output)
    );
}

#[test]
fn two_mpi_ranks_make_the_single_process_update_and_selection() {
    use cove::loss::ControlConfig;
    let clip_cov = ControlConfig::ClipCov {
        ratio: 0.2.into(),
        lb: -100.0,
        ub: 100.0,
    };
    let kl_cov = ControlConfig::KlCov {
        ratio: 0.2.into(),
        beta: 1.0,
    };
    let cases = [
        ("GRPO", ControlConfig::None, Precision::F32, false),
        ("Clip-Cov", clip_cov.clone(), Precision::F32, false),
        ("KL-Cov", kl_cov, Precision::F32, false),
        (
            "Clip-Cov, bf16-mixed",
            clip_cov.clone(),
            Precision::Bf16Mixed,
            false,
        ),
        ("Clip-Cov, LoRA", clip_cov, Precision::F32, true),
    ];
    for (name, control, precision, lora) in cases {
        let init = initial_weights(lora);
        let dir = tempfile::tempdir().unwrap();
        let (one, two) = (dir.path().join("one"), dir.path().join("two"));
        let config = |out: &Path| {
            let mut cfg = small_dp_config(out, control.clone());
            cfg.precision = precision;
            if name == "KL-Cov" || precision == Precision::Bf16Mixed {
                // KL-Cov's |logp - old_logp| has gradient ±beta at a difference of float
                // noise, so on a step's first mini-batch its sign follows rounding (see
                // `learner_packing`); and a bf16 rollout's log-probs depend on which
                // prompts share its batch at bf16's resolution (about 4e-3). Old
                // log-probs recomputed with the training pass's layout are the same on
                // any number of ranks.
                cfg.reuse_rollout_logprobs = false;
                cfg.logprob_batch_size = cfg.micro_batch_size;
            }
            if precision == Precision::Bf16Mixed {
                // Where the current policy selects, a micro-batch whose backward ran
                // first gets a correction pass, and which ones do depends on the ranks'
                // micro-batches; the two routes agree exactly in f32 and to bf16's
                // rounding in bf16 (7e-5 of the gradient norm here). Selecting from the
                // old log-probs takes one route on any number of ranks.
                cfg.loss.selection_logp = cove::loss::SelectionLogp::Old;
            }
            cfg
        };
        train_ranks(1, &config(&one), lora);
        train_ranks(2, &config(&two), lora);
        let (m1, m2) = (metrics(&one), metrics(&two));
        assert_eq!(m1.len(), 2, "{name}: {m1:?}");
        assert_eq!(
            m2.len(),
            2,
            "{name}: rank 0 alone writes the metrics: {m2:?}"
        );
        for (a, b) in m1.iter().zip(&m2) {
            let step = &a["step"];
            assert!(a["accuracy"].as_f64().unwrap() < 1.0, "{name}: {a}");
            for key in [
                "reward_mean",
                "response_len_max",
                "selected_frac",
                "selection_digest",
            ] {
                assert_eq!(a[key], b[key], "{name}, step {step}: {key}");
            }
            // Means of per-token differences near 0 (approx_kl, the loss) get an absolute
            // margin for the float reordering of the log-probs (about 3e-7 per token).
            for key in ["loss", "entropy", "approx_kl", "grad_norm"] {
                let (x, y) = (a[key].as_f64().unwrap(), b[key].as_f64().unwrap());
                assert!(
                    (x - y).abs() <= 1e-5 * x.abs() + 1e-6,
                    "{name}, step {step}: {key} {x} vs {y}"
                );
            }
        }
        if name != "GRPO" {
            assert!(
                m1.iter().all(|m| m["selected_frac"].as_f64().unwrap() > 0.0
                    && m["selection_digest"].is_string()),
                "{name} selects: {m1:?}"
            );
        }
        let (gap, largest) = update_gap(&init, &final_weights(&one), &final_weights(&two));
        eprintln!("{name}: 2 ranks vs 1: max |Δ update| {gap:e}, largest update {largest:e}");
        assert!(largest > 1e-3, "{name}: the weights moved ({largest:e})");
        assert!(
            gap <= 1e-5 * largest,
            "{name}: updates differ by {gap:e} (largest {largest:e})"
        );
    }
}

#[test]
fn ranks_that_start_from_different_weights_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_dp_config(&dir.path().join("run"), cove::loss::ControlConfig::None);
    let output = rank_job(2, &cfg, &[("COVE_DP_SEED_BY_RANK", "1")]);
    let said = text(&output);
    assert!(!output.status.success(), "{said}");
    assert!(
        said.contains("the initial weights: rank 1's `") && said.contains("differs from rank 0's"),
        "{said}"
    );
    assert!(
        !dir.path().join("run").join("metrics.jsonl").exists(),
        "nothing trained"
    );
}

/// The pids of `mpirun`'s ranks (children whose command line names `out`), by rank.
fn rank_pids(out: &Path) -> Vec<(usize, u32)> {
    let needle = out.display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if !cmdline.starts_with(TRAIN_MATH) || !cmdline.contains(&needle) {
            continue;
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let rank = String::from_utf8_lossy(&environ)
            .split('\0')
            .find_map(|kv| kv.strip_prefix("OMPI_COMM_WORLD_RANK=")?.parse().ok());
        if let Some(rank) = rank {
            found.push((rank, pid));
        }
    }
    found.sort();
    found
}

/// Waits until the run has a checkpoint of step `step` or later.
fn wait_for_checkpoint(child: &mut Child, out: &Path, step: u64) {
    let dir = out.join("checkpoints");
    let start = Instant::now();
    loop {
        let newest = cove::checkpoint::list(&dir)
            .unwrap_or_default()
            .last()
            .map_or(0, |c| c.0);
        if newest >= step {
            return;
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no checkpoint {step}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until the job `child` has a checkpoint of step `step` or later, sends its
/// rank 1 `sig`, and waits for the job to end, which must be a failure. Returns rank
/// 1's pid, the job's output and how long it took to end after the signal.
fn signal_rank_1(mut child: Child, out: &Path, step: u64, sig: &str) -> (u32, String, Duration) {
    wait_for_checkpoint(&mut child, out, step);
    let ranks = rank_pids(out);
    assert_eq!(ranks.len(), 2, "{ranks:?}");
    signal(ranks[1].1, sig);
    let start = Instant::now();
    let output = child.wait_with_output().unwrap();
    let took = start.elapsed();
    let said = text(&output);
    assert!(!output.status.success(), "{said}");
    (ranks[1].1, said, took)
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

#[test]
fn a_hung_or_killed_rank_stops_the_job_and_the_run_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, cut) = (dir.path().join("whole"), dir.path().join("cut"));
    let control = ["kind=\"kl-cov\"", "ratio=0.2"];
    let steps = 6;
    train(2, &sets(&control, steps, &whole));

    let mut cut_sets = sets(&control, steps, &cut);
    cut_sets.push("trainer.dist.timeout_s=5".into());
    // The first job starts the run; the later ones continue it (`--resume`).
    let spawn = |resume: bool| {
        let mut cmd = command(2, &cut_sets);
        if resume {
            cmd.arg("--resume");
        }
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };

    // Rank 1 hangs (stopped) after the first checkpoint: rank 0 waits at its next
    // collective, then stops with an error naming rank 1.
    let (hung, said, took) = signal_rank_1(spawn(false), &cut, 1, "-STOP");
    assert!(
        said.contains("timed out") && said.contains("rank(s) [1] did not arrive or answer"),
        "the error names the hung rank:\n{said}"
    );
    assert!(took < Duration::from_secs(60), "stopped after {took:?}");
    eprintln!(
        "hung rank 1: the job stopped after {took:?}: {}",
        said.trim()
    );
    signal(hung, "-KILL");

    // Rank 1 is killed outright mid-run: mpirun stops rank 0 and names rank 1.
    let resumed_from = cove::checkpoint::list(&cut.join("checkpoints")).unwrap();
    let from = resumed_from.last().unwrap().0;
    let (_, said, took) = signal_rank_1(spawn(true), &cut, from + 1, "-KILL");
    assert!(
        said.contains("rank 1"),
        "mpirun names the dead rank:\n{said}"
    );
    assert!(took < Duration::from_secs(60), "stopped after {took:?}");
    eprintln!(
        "killed rank 1: the job stopped after {took:?}: {}",
        said.trim()
    );
    let latest = cove::checkpoint::list(&cut.join("checkpoints")).unwrap();
    assert!(
        latest.last().unwrap().0 < steps,
        "interrupted before the end"
    );

    // Resuming from the newest checkpoint reproduces the uninterrupted run.
    let output = command(2, &cut_sets).arg("--resume").output().unwrap();
    assert!(
        output.status.success(),
        "resuming failed:\n{}",
        text(&output)
    );
    let (a, b) = (final_weights(&whole), final_weights(&cut));
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x.equal(y), "{name} differs after resuming");
    }
    let (ma, mb) = (metrics(&whole), metrics(&cut));
    assert_eq!(ma.len(), steps as usize);
    assert_eq!(mb.len(), steps as usize, "one line per step after resuming");
    for (x, y) in ma.iter().zip(&mb) {
        for key in ["loss", "selection_digest", "reward_mean"] {
            assert_eq!(x[key], y[key], "step {}: {key}", x["step"]);
        }
    }
}

/// A launch the collective cannot serve is refused with what works instead.
#[test]
fn launcher_environments_are_read_and_torchrun_without_nccl_is_refused() {
    use cove::dist::{Launch, Launcher};
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    };
    let mpirun = Launch::from_vars(vars(&[
        ("OMPI_COMM_WORLD_RANK", "1"),
        ("OMPI_COMM_WORLD_SIZE", "4"),
        ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
        ("OMPI_COMM_WORLD_LOCAL_SIZE", "2"),
    ]))
    .unwrap();
    assert_eq!(
        (
            mpirun.launcher,
            mpirun.rank,
            mpirun.world_size,
            mpirun.local_world_size
        ),
        (Some(Launcher::Mpirun), 1, 4, 2)
    );
    let slurm = Launch::from_vars(vars(&[
        ("SLURM_PROCID", "5"),
        ("SLURM_NTASKS", "8"),
        ("SLURM_LOCALID", "1"),
        ("SLURM_NTASKS_PER_NODE", "4(x2)"),
    ]))
    .unwrap();
    assert_eq!(
        (
            slurm.launcher,
            slurm.rank,
            slurm.local_rank,
            slurm.local_world_size
        ),
        (Some(Launcher::Slurm), 5, 1, 4)
    );
    let bad = Launch::from_vars(vars(&[("RANK", "2"), ("WORLD_SIZE", "2")])).unwrap_err();
    assert!(bad.to_string().contains("RANK=2"), "{bad}");
    let torchrun = Launch::from_vars(vars(&[("RANK", "0"), ("WORLD_SIZE", "2")])).unwrap();
    let refused = torchrun
        .connect(Duration::from_secs(1))
        .err()
        .expect("refused");
    assert!(refused.to_string().contains("mpirun -n 2"), "{refused}");
    let alone = Launch::from_vars(|_| None).unwrap();
    assert_eq!((alone.launcher, alone.world_size), (None, 1));
}

/// The collective operations on two ranks: started by
/// [`collective_operations_work_across_two_mpi_ranks`] under `mpirun` with
/// `COVE_DP_OPS` set; does nothing without it.
#[test]
#[ignore = "one rank of a data-parallel test; it starts it"]
fn collective_operations_rank() {
    use cove::dist::{Launch, ReduceOp, all_reduce_buckets};
    if std::env::var_os("COVE_DP_OPS").is_none() {
        return;
    }
    let comm = Launch::from_env()
        .unwrap()
        .connect(Duration::from_secs(30))
        .unwrap();
    let (rank, world) = (comm.rank() as f64, comm.world_size() as f64);
    assert_eq!(world, 2.0);
    let values = |t: &Tensor| Vec::<f64>::try_from(&t.to_kind(tch::Kind::Double)).unwrap();
    for (op, want) in [
        (ReduceOp::Sum, [1.0, 3.0]),
        (ReduceOp::Mean, [0.5, 1.5]),
        (ReduceOp::Max, [1.0, 2.0]),
    ] {
        let mut t = Tensor::from_slice(&[rank as f32, 1.0 + rank as f32]);
        comm.all_reduce(&mut t, op, "all-reduce").unwrap();
        assert_eq!(values(&t), want, "{op:?}");
    }
    let gathered = comm
        .all_gather(
            &Tensor::from_slice(&[rank as i64 * 10, 7]).view([1, 2]),
            "gather",
        )
        .unwrap();
    assert_eq!(gathered.size(), [2, 2]);
    assert_eq!(values(&gathered.reshape([-1])), [0.0, 7.0, 10.0, 7.0]);
    let mask = Tensor::from_slice(&[rank == 1.0, true]);
    let masks = comm.all_gather(&mask, "gather masks").unwrap();
    assert_eq!(masks.kind(), tch::Kind::Bool);
    assert_eq!(values(&masks), [0.0, 1.0, 1.0, 1.0]);
    let mut b = Tensor::from_slice(&[rank + 5.0]);
    comm.broadcast(&mut b, 1, "broadcast").unwrap();
    assert_eq!(values(&b), [6.0]);
    comm.barrier("barrier").unwrap();
    // Buckets: a tensor of each kind and one over the bucket size, summed in place.
    let mut tensors = vec![
        Tensor::ones([3, 2], (tch::Kind::Float, tch::Device::Cpu)) * (rank + 1.0),
        Tensor::from_slice(&[rank]),
        Tensor::ones(
            [cove::dist::BUCKET_ELEMENTS + 1],
            (tch::Kind::Float, tch::Device::Cpu),
        ),
    ];
    all_reduce_buckets(comm.as_ref(), &mut tensors, ReduceOp::Sum, "buckets").unwrap();
    assert_eq!(values(&tensors[0].reshape([-1])), [3.0; 6]);
    assert_eq!(values(&tensors[1]), [1.0]);
    assert_eq!(
        values(&tensors[2].sum(tch::Kind::Double).reshape([1])),
        [2.0 * (cove::dist::BUCKET_ELEMENTS + 1) as f64]
    );
    // Ranks that hand over different sizes are stopped before any data moves.
    let err = comm
        .all_gather(
            &Tensor::zeros([1 + rank as i64], (tch::Kind::Float, tch::Device::Cpu)),
            "uneven gather",
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("uneven gather") && err.contains("rank"),
        "{err}"
    );
    eprintln!("rank {rank}: every operation checked; uneven sizes: {err}");
}

#[test]
fn collective_operations_work_across_two_mpi_ranks() {
    let output = launch(2, std::env::current_exe().unwrap())
        .args([
            "--exact",
            "data_parallel::collective_operations_rank",
            "--ignored",
        ])
        .args(["--nocapture", "--test-threads", "1"])
        .env("COVE_DP_OPS", "1")
        .output()
        .expect("mpirun (scripts/setup.sh installs OpenMPI) starts");
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert_eq!(said.matches("every operation checked").count(), 2, "{said}");
}

/// `train-code` on two ranks: rank 0 alone runs the reference-solution check and
/// measures the held-out start (each rank used to repeat both), and the step completes.
#[test]
fn train_code_checks_reference_solutions_on_rank_0_only() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let output = launch(2, env!("CARGO_BIN_EXE_train-code"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["--quiet", "--steps", "1", "--out"])
        .arg(&out)
        .args([
            "--set",
            "model.path=\"tiny\"",
            "--set",
            "model.device=\"cpu\"",
        ])
        .args(["--set", "data.eval_limit=8", "--set", "eval.every=0"])
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    let text = text(&output);
    assert!(output.status.success(), "{text}");
    assert_eq!(text.matches("sandbox check: 4/4").count(), 1, "{text}");
    assert_eq!(text.matches("starting pass@1").count(), 1, "{text}");
    assert_eq!(
        std::fs::read_to_string(out.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count(),
        1
    );
}
