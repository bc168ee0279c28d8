//! The demo pipeline end to end with a budget of seconds: warm start, four arms,
//! report folder (the full demo is `bash scripts/demo.sh`, not a test).

use cove::cli::demo::{DemoConfig, TINY_DEFAULTS, run};

#[test]
fn demo_pipeline_writes_a_complete_report() {
    let dir = tempfile::tempdir().unwrap();
    let sets: Vec<String> = [
        "eval_problems=8",
        "eval_every=1",
        "sft.max_steps=2",
        "sft.eval_every=1",
        "sft.batch_size=8",
        "grpo.steps=3",
        "grpo.prompts_per_step=2",
        "grpo.group_size=4",
        "grpo.mini_batch_size=8",
        "grpo.micro_batch_size=4",
        "grpo.logprob_batch_size=8",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (cfg, table): (DemoConfig, _) = cove::config::resolve(TINY_DEFAULTS, None, &sets).unwrap();
    let out = dir.path().join("demo");
    let outcome = run(&cfg, &table, &out, false).unwrap();
    let names: Vec<&str> = outcome.methods.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["grpo", "grpo-clip1", "clip-cov", "kl-cov"]);
    for m in &outcome.methods {
        assert_eq!(m.entropy.len(), 3, "{}", m.name);
        assert_eq!(m.accuracy.len(), 4, "{}: step 0 + 3 evaluations", m.name);
        assert_eq!(m.probe_entropy.len(), 4, "{}: step 0 + 3 steps", m.name);
        // Every arm starts from the same probe entropy (same weights, same probe).
        assert_eq!(m.probe_entropy[0], outcome.methods[0].probe_entropy[0]);
        let lines = std::fs::read_to_string(out.join(&m.name).join("metrics.jsonl")).unwrap();
        assert_eq!(lines.lines().count(), 3, "{}", m.name);
        let first: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
        assert!(first["entropy"].as_f64().unwrap() > 0.0);
        assert!(first["eval"]["pass@1"].is_number() && first["eval"]["k"] == 1);
        assert!(first["probe_entropy"].as_f64().unwrap() > 0.0);
    }
    for f in [
        "summary.md",
        "config.toml",
        "sft.safetensors",
        "outcome.json",
        "plots/entropy_vs_step.png",
        "plots/accuracy_vs_step.png",
        "plots/probe_entropy_vs_step.png",
    ] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(
        summary.contains("| grpo |")
            && summary.contains("| kl-cov |")
            && summary.contains("`grpo-clip1`: no control, PPO clip [1 - 1, 1 + 1]"),
        "{summary}"
    );
    // Same seed and warm start: the three runs start from the same test accuracy.
    let starts: Vec<f64> = outcome.methods.iter().map(|m| m.accuracy[0].1).collect();
    assert!(starts.iter().all(|s| *s == starts[0]), "{starts:?}");
}

/// `cove demo --model smollm2-135m-instruct` resolves to the real-model defaults (held-out
/// accuracy, no warm start), and the GPU budget resolves over them; each budget validates.
#[test]
fn real_model_budgets_resolve() {
    use cove::cli::demo::REAL_MODEL_DEFAULTS;
    let gpu =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/demo-smollm2-gpu.toml");
    let (cpu, _): (DemoConfig, _) = cove::config::resolve(REAL_MODEL_DEFAULTS, None, &[]).unwrap();
    let (gpu, _): (DemoConfig, _) =
        cove::config::resolve(REAL_MODEL_DEFAULTS, Some(&gpu), &[]).unwrap();
    for cfg in [&cpu, &gpu] {
        assert_eq!(cfg.model.path, "smollm2-135m-instruct");
        assert!(cfg.held_out && cfg.sft.is_none());
        assert_eq!(cfg.methods.len(), 4);
        cfg.grpo.validate(std::path::Path::new("<demo>")).unwrap();
        // Each arm is a whole loss: the Cov arms and their control share PPO clip 1.
        let clips: Vec<f64> = cfg
            .methods
            .iter()
            .map(|m| m.loss_config(&cfg.grpo.loss).unwrap().clip.eps_high)
            .collect();
        assert_eq!(clips, [0.2, 1.0, 1.0, 0.2]);
    }
    assert_eq!(
        gpu.grpo.prompts_per_step * gpu.grpo.group_size / gpu.grpo.mini_batch_size,
        8
    );
    assert_eq!(gpu.model.device, "cuda");
}

/// An arm's loss table is checked like the trainer's: an unknown field names the arm.
#[test]
fn an_arm_with_a_bad_loss_field_is_named() {
    let sets = vec!["methods=[{name = \"odd\", loss = {clipp = 1}}]".to_string()];
    let (cfg, _): (DemoConfig, _) = cove::config::resolve(TINY_DEFAULTS, None, &sets).unwrap();
    let err = cfg.methods[0]
        .loss_config(&cfg.grpo.loss)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("methods `odd`") && err.contains("clipp"),
        "{err}"
    );
}

/// `--seeds 2 --paired` on the tiny budget: each arm runs with seeds 7 and 8 in its own
/// folder, the paired test compares each Cov arm with the GRPO arm of its PPO clip, and
/// `summary.json` holds what scripted checks read.
#[test]
fn seeds_and_the_paired_test_fill_summary_json() {
    let dir = tempfile::tempdir().unwrap();
    let sets: Vec<String> = [
        "seeds=2",
        "paired=true",
        "paired_batches=3",
        "eval_problems=8",
        "eval_every=1",
        "probe_prompts=4",
        "sft.max_steps=1",
        "sft.eval_every=1",
        "sft.batch_size=8",
        "grpo.steps=2",
        "grpo.prompts_per_step=2",
        "grpo.group_size=4",
        "grpo.mini_batch_size=4",
        "grpo.micro_batch_size=4",
        "grpo.logprob_batch_size=8",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (cfg, table): (DemoConfig, _) = cove::config::resolve(TINY_DEFAULTS, None, &sets).unwrap();
    let out = dir.path().join("demo");
    let outcome = run(&cfg, &table, &out, false).unwrap();
    assert_eq!(outcome.methods.len(), 8);
    assert!(out.join("kl-cov/seed-8/metrics.jsonl").is_file());
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let arms = summary["arms"].as_array().unwrap();
    let names: Vec<&str> = arms.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["grpo", "grpo-clip1", "clip-cov", "kl-cov"]);
    for arm in arms {
        assert!(arm["loss"]["clip"]["eps_high"].is_number(), "{arm}");
        let seeds = arm["seeds"].as_array().unwrap();
        assert_eq!(seeds.len(), 2);
        assert_eq!(seeds[1]["seed"], 8);
        for key in [
            "probe_entropy_start",
            "probe_entropy_end",
            "accuracy_start",
            "accuracy_end",
        ] {
            assert!(seeds[0][key].is_number(), "{key}: {arm}");
        }
    }
    let paired = summary["paired"].as_array().unwrap();
    let pairs: Vec<(&str, &str)> = paired
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["baseline"].as_str().unwrap()))
        .collect();
    assert_eq!(pairs, [("clip-cov", "grpo-clip1"), ("kl-cov", "grpo")]);
    for p in paired {
        let (lo, mean, hi) = (
            p["ci95_low"].as_f64().unwrap(),
            p["mean_entropy_change"].as_f64().unwrap(),
            p["ci95_high"].as_f64().unwrap(),
        );
        assert!(lo <= mean && mean <= hi, "{p}");
    }
    assert!(out.join("paired.json").is_file());
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("## Over 2 seeds") && md.contains("## Paired mechanism test"));
}
