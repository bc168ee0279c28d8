//! Evaluation: a policy's scores on a task's problems from k samples each
//! ([`EvalScores`]: pass@1, pass@k, mean@k), the one measure `cove eval`, the training
//! binaries' held-out start, their `[eval]` during training and the demo share (math
//! through [`math_scores`], code through [`code_scores`]); and the entropy of a policy on
//! a fixed probe.

use crate::data::Prompt;
use crate::data::code::CodeExample;
use crate::data::math::MathExample;
use crate::model::{LogprobOptions, ModelError, Policy, response_logprobs};
use crate::rollout::{RolloutEngine, RolloutError, RolloutRequest, SamplingConfig, generate};
use crate::verifiers::code::CodeVerifier;
use crate::verifiers::math::MathVerifier;
use crate::verifiers::{Reward, Score};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tch::Kind;

/// A policy's scores on a set of problems from `k` samples each.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalScores {
    /// Samples per problem.
    pub k: usize,
    /// Problems.
    pub problems: usize,
    /// Correct samples, over all problems.
    pub correct: usize,
    /// Mean over problems of the fraction of its samples that are correct: the unbiased
    /// estimate of pass@1 (with `k = 1`, the fraction of problems solved).
    #[serde(rename = "pass@1")]
    pub pass_at_1: f64,
    /// Fraction of problems with at least one correct sample among its `k`.
    #[serde(rename = "pass@k")]
    pub pass_at_k: f64,
    /// Mean reward over all samples (the verifier's reward, which may give partial
    /// credit where correctness does not).
    #[serde(rename = "mean@k")]
    pub mean_at_k: f64,
}

/// Samples `cfg.n` responses per prompt and scores each against its prompt's task with
/// `reward` (in parallel).
pub fn scores<R: Reward>(
    policy: &Policy,
    prompts: &[Vec<i64>],
    tasks: &[R::Task],
    reward: &R,
    cfg: &SamplingConfig,
) -> Result<EvalScores, RolloutError> {
    let samples = generate(policy, prompts, cfg)?;
    let scored: Vec<(usize, Score)> = samples
        .par_iter()
        .map(|s| {
            (
                s.prompt_index,
                reward.score(&tasks[s.prompt_index], &s.text),
            )
        })
        .collect();
    Ok(tally(&scored, prompts.len(), cfg.n))
}

/// Samples `cfg.n` episodes per prompt from `engine`, which scores them itself (a
/// [`crate::rollout::MultiTurnEngine`] whose environment holds the tasks of `prompts`,
/// in order).
pub fn episode_scores(
    policy: &Policy,
    engine: &mut dyn RolloutEngine,
    prompts: &[Vec<i64>],
    cfg: &SamplingConfig,
) -> Result<EvalScores, RolloutError> {
    let indices: Vec<usize> = (0..prompts.len()).collect();
    let keys: Vec<u64> = (0..prompts.len() as u64).collect();
    let episodes = engine.generate(
        policy,
        &RolloutRequest {
            prompts,
            tasks: &indices,
            keys: &keys,
            sampling: cfg,
            policy_version: 0,
        },
    )?;
    let scored = episodes
        .into_iter()
        .map(|t| match t.score {
            Some(score) => Ok((t.group, score)),
            None => Err(RolloutError::Environment {
                name: engine.name().to_string(),
                message: "an episode came back unscored".into(),
            }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(tally(&scored, prompts.len(), cfg.n))
}

/// The scores of `problems` problems from `k` samples each, `(problem, score)` pairs.
fn tally(scored: &[(usize, Score)], problems: usize, k: usize) -> EvalScores {
    let mut correct = vec![0usize; problems];
    let mut total = 0.0;
    for (index, score) in scored {
        correct[*index] += usize::from(score.correct);
        total += score.reward;
    }
    let k = k.max(1);
    let per_problem = problems.max(1) as f64;
    EvalScores {
        k,
        problems,
        correct: correct.iter().sum(),
        pass_at_1: correct.iter().map(|&c| c as f64 / k as f64).sum::<f64>() / per_problem,
        pass_at_k: correct.iter().filter(|&&c| c > 0).count() as f64 / per_problem,
        mean_at_k: total / scored.len().max(1) as f64,
    }
}

/// Each prompt's token ids as [`Policy::prompt_ids`] renders them (with the chat
/// template when the policy has one).
pub fn prompt_ids<'a>(
    policy: &Policy,
    prompts: impl Iterator<Item = &'a Prompt>,
) -> Result<Vec<Vec<i64>>, ModelError> {
    let templated = policy.chat_template.is_some();
    prompts
        .map(|p| policy.prompt_ids(&p.messages(), templated))
        .collect()
}

/// [`scores`] on math rows with the math verifier (default options).
pub fn math_scores(
    policy: &Policy,
    rows: &[MathExample],
    cfg: &SamplingConfig,
) -> Result<EvalScores, RolloutError> {
    let prompts = prompt_ids(policy, rows.iter().map(|r| &r.prompt))?;
    let answers: Vec<String> = rows.iter().map(|r| r.answer.clone()).collect();
    let verifier = MathVerifier::new(Default::default());
    scores(policy, &prompts, &answers, &verifier, cfg)
}

/// [`scores`] on code rows with `verifier` (a row whose `tests` the verifier cannot read
/// is an error naming it).
pub fn code_scores(
    policy: &Policy,
    rows: &[CodeExample],
    verifier: &CodeVerifier,
    cfg: &SamplingConfig,
) -> Result<EvalScores, Box<dyn std::error::Error>> {
    let prompts = prompt_ids(policy, rows.iter().map(|r| &r.prompt))?;
    let suites = rows
        .iter()
        .map(CodeExample::test_suite)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(scores(policy, &prompts, &suites, verifier, cfg)?)
}

/// A fixed probe of the policy's entropy: the same prompts and the same responses at
/// every measurement, so a change between two measurements is the policy's, not the
/// sampling's (the entropy of freshly sampled responses swings by tenths of a nat from
/// one batch to the next). The paper's entropy dynamics are read against it.
#[derive(Debug, Clone)]
pub struct Probe {
    /// (prompt, response) token ids.
    pairs: Vec<(Vec<i64>, Vec<i64>)>,
    /// The temperature the entropy is taken at (the rollout's).
    temperature: f64,
}

impl Probe {
    /// Samples one response per prompt from `policy` with `cfg` (its `n` is ignored) and
    /// keeps them as the probe; empty responses are dropped.
    pub fn sample(
        policy: &Policy,
        prompts: &[Vec<i64>],
        cfg: &SamplingConfig,
    ) -> Result<Probe, RolloutError> {
        let cfg = SamplingConfig {
            n: 1,
            ..cfg.clone()
        };
        let pairs = generate(policy, prompts, &cfg)?
            .into_iter()
            .filter(|s| !s.token_ids.is_empty())
            .map(|s| (prompts[s.prompt_index].clone(), s.token_ids))
            .collect();
        Ok(Probe {
            pairs,
            temperature: cfg.temperature,
        })
    }

    /// Mean token entropy (nats) of `policy` over the probe's responses, at the
    /// probe's temperature (0 for an empty probe).
    pub fn entropy(&self, policy: &Policy) -> Result<f64, ModelError> {
        if self.pairs.is_empty() {
            return Ok(0.0);
        }
        let _no_grad = tch::no_grad_guard();
        let pairs: Vec<(&[i64], &[i64])> = self
            .pairs
            .iter()
            .map(|(p, r)| (p.as_slice(), r.as_slice()))
            .collect();
        let out = response_logprobs(
            policy.model.as_ref(),
            &pairs,
            policy.pad_token_id,
            &LogprobOptions {
                temperature: self.temperature,
                ..LogprobOptions::default()
            },
        )?;
        let total = (&out.entropies * &out.mask)
            .sum(Kind::Double)
            .double_value(&[]);
        Ok(total / out.mask.sum(Kind::Double).double_value(&[]).max(1.0))
    }
}
