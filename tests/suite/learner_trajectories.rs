//! The rollout seam: what the local engine's trajectories hold, and that the learner
//! trains only on the tokens a trajectory's loss mask marks (tool or environment output
//! is read, never trained on).

use crate::learner_common::{small_config, trainer};
use cove::rollout::{
    FinishReason, LocalEngine, RolloutEngine, RolloutRequest, SamplingConfig, Trajectory,
};
use cove::verifiers::Score;

#[test]
fn the_local_engine_makes_complete_trajectories() {
    let policy = cove::model::tiny::policy(&Default::default(), 0, tch::Device::Cpu).unwrap();
    let prompts = vec![
        policy.encode("A number:").unwrap(),
        policy.encode("PIN:").unwrap(),
    ];
    let sampling = SamplingConfig {
        n: 3,
        max_new_tokens: 5,
        seed: 7,
        ..Default::default()
    };
    let got = LocalEngine
        .generate(
            &policy,
            &RolloutRequest {
                prompts: &prompts,
                tasks: &[5, 2],
                keys: &[0, 1],
                sampling: &sampling,
                policy_version: 9,
            },
        )
        .unwrap();
    assert_eq!(got.len(), 6);
    for (i, t) in got.iter().enumerate() {
        t.check().unwrap();
        assert_eq!(t.group, i / 3);
        assert_eq!(t.task, [5, 2][i / 3]);
        assert_eq!(t.prompt(), prompts[i / 3].as_slice());
        assert!(t.loss_mask[..t.prompt_len].iter().all(|&m| !m));
        assert!(t.response_mask().iter().all(|&m| m));
        assert_eq!(t.logprobs.as_ref().unwrap().len(), t.response().len());
        assert_eq!(t.policy_version, 9);
        assert!(t.score.is_none());
        assert_eq!(t.text, policy.decode(t.response()).unwrap());
    }
    let mut bad = got[0].clone();
    bad.loss_mask[0] = true;
    assert!(bad.check().unwrap_err().contains("prompt"));
}

/// One learning step on four hand-made trajectories of prompt 0, each ending in two
/// "tool" tokens; returns the parameters after it.
fn params_after(tool: [i64; 2], tool_mask: bool) -> Vec<(String, tch::Tensor)> {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small_config(dir.path());
    (cfg.prompts_per_step, cfg.group_size) = (1, 4);
    (cfg.mini_batch_size, cfg.micro_batch_size) = (4, 4);
    cfg.reuse_rollout_logprobs = false;
    let mut t = trainer(cfg);
    let prompt = t.prompt_ids(0).to_vec();
    let trajectories: Vec<Trajectory> = (0..4)
        .map(|i| {
            let response = [10 + i, 20 + i, 30, tool[0], tool[1]];
            let tokens: Vec<i64> = prompt.iter().chain(&response).copied().collect();
            let mut loss_mask = vec![false; prompt.len()];
            loss_mask.extend([true, true, true, tool_mask, tool_mask]);
            Trajectory {
                task: 0,
                group: 0,
                prompt_len: prompt.len(),
                tokens,
                loss_mask,
                logprobs: None,
                entropies: None,
                policy_version: 0,
                text: String::new(),
                score: Some(Score {
                    reward: i as f64,
                    correct: false,
                    details: String::new(),
                }),
                finish: FinishReason::Stop,
                episode: None,
            }
        })
        .collect();
    let m = t.learn(&trajectories).unwrap();
    assert!(m.grad_norm > 0.0);
    t.named_params()
}

#[test]
fn masked_tokens_never_reach_the_loss() {
    let same = |a: &[(String, tch::Tensor)], b: &[(String, tch::Tensor)]| {
        a.iter().zip(b).all(|((_, x), (_, y))| x.equal(y))
    };
    // Masked: what the tool wrote cannot change the update.
    let (a, b) = (params_after([40, 41], false), params_after([50, 51], false));
    assert!(same(&a, &b), "masked tool tokens changed the update");
    // Unmasked, the same change does move it (the comparison can fail).
    let (a, b) = (params_after([40, 41], true), params_after([50, 51], true));
    assert!(!same(&a, &b), "trained tokens did not change the update");
}

/// A dataset's system prompt reaches the prompt ids in training, by the same path
/// evaluation takes (`Policy::prompt_ids`).
#[test]
fn training_keeps_the_system_prompt_as_evaluation_does() {
    use cove::data::Prompt;
    use cove::model::Message;
    use cove::trainer::{Example, Trainer};
    let policy = cove::model::tiny::policy(&Default::default(), 0, tch::Device::Cpu).unwrap();
    let messages = vec![
        Message::system("Answer with digits."),
        Message::user("A number:"),
    ];
    let expected = policy.prompt_ids(&messages, true).unwrap();
    let without_system = policy.prompt_ids(&messages[1..], true).unwrap();
    assert!(expected.len() > without_system.len());
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small_config(dir.path());
    cfg.chat_template = true;
    let data = vec![Example {
        prompt: Prompt::Chat(messages),
        task: (),
    }];
    let t = Trainer::new(cfg, policy, crate::learner_common::Digits, data).unwrap();
    assert_eq!(t.prompt_ids(0), expected.as_slice());
}
