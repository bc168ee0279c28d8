//! The supervised warm start of the tiny demo: the tiny policy learns the task's answers
//! until its accuracy is inside the target window.

use super::config::{DemoConfig, SftConfig};
use super::{DemoError, accuracy, prompt_ids};
use crate::data::synth::SynthProblem;
use crate::model::{LogprobOptions, Policy, response_logprobs};
use crate::optim::{AdamW, OptimConfig};
use rand::SeedableRng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;

/// The supervised warm start; returns (task accuracy reached, steps run).
pub(super) fn warm_start(
    cfg: &DemoConfig,
    sft: &SftConfig,
    policy: &Policy,
    pool: &[SynthProblem],
    test_prompts: &[Vec<i64>],
    test: &[SynthProblem],
    log: &dyn Fn(String),
) -> Result<(f64, usize), DemoError> {
    let eval = || {
        accuracy(
            policy,
            test_prompts,
            test,
            cfg.grpo.rollout.temperature,
            cfg.grpo.rollout.max_new_tokens,
            cfg.seed,
        )
        .map(|s| s.pass_at_1)
    };
    let mut acc = eval()?;
    log(format!(
        "warm start: step 0, task accuracy {:.1}%",
        acc * 100.0
    ));
    if acc >= sft.target_accuracy {
        return Ok((acc, 0));
    }
    let mut opt = AdamW::new(
        policy.model.var_store(),
        OptimConfig {
            lr: sft.lr,
            weight_decay: 0.0,
            ..OptimConfig::default()
        },
    );
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x5f7);
    let eos = policy.eos_token_ids[0];
    // (prompt, answer + EOS) token ids of every problem, tokenized once.
    let prompts = prompt_ids(policy, pool)?;
    let examples: Vec<(Vec<i64>, Vec<i64>)> = prompts
        .into_iter()
        .zip(pool)
        .map(|(prompt, p)| {
            let mut response = policy.encode(&p.answer)?;
            response.push(eos);
            Ok((prompt, response))
        })
        .collect::<Result<_, DemoError>>()?;
    for step in 1..=sft.max_steps {
        let pairs: Vec<(&[i64], &[i64])> = examples
            .choose_multiple(&mut rng, sft.batch_size)
            .map(|(p, r)| (p.as_slice(), r.as_slice()))
            .collect();
        let out = response_logprobs(
            &*policy.model,
            &pairs,
            policy.pad_token_id,
            &LogprobOptions::default(),
        )?;
        let loss =
            -(&out.logprobs * &out.mask).sum(tch::Kind::Float) / out.mask.sum(tch::Kind::Float);
        opt.zero_grad();
        loss.backward();
        opt.clip_grad_norm();
        opt.step(sft.lr);
        if step % sft.eval_every == 0 || step == sft.max_steps {
            acc = eval()?;
            log(format!(
                "warm start: step {step}, loss {:.3}, task accuracy {:.1}%",
                loss.double_value(&[]),
                acc * 100.0
            ));
            if acc >= sft.target_accuracy {
                if acc > sft.max_accuracy {
                    log(format!(
                        "warm start overshot the window: {:.1}% > {:.0}%",
                        acc * 100.0,
                        sft.max_accuracy * 100.0
                    ));
                }
                return Ok((acc, step));
            }
        }
    }
    log(format!(
        "warm start: reached {:.1}% after sft.max_steps = {}, below the target {:.0}%",
        acc * 100.0,
        sft.max_steps,
        sft.target_accuracy * 100.0
    ));
    Ok((acc, sft.max_steps))
}
