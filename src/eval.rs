//! Evaluation: the pass rate of a policy on math problems, the one measure `cove eval`,
//! `train-math`'s held-out start and the demo share.

use crate::data::math::MathExample;
use crate::model::{ModelError, Policy};
use crate::rollout::{RolloutError, SamplingConfig, generate};
use crate::verifiers::Reward;
use crate::verifiers::math::MathVerifier;

/// Samples `cfg.n` responses per prompt and scores each against its prompt's answer with
/// the math verifier (default options): `(correct, responses)`.
pub fn pass_rate(
    policy: &Policy,
    prompts: &[Vec<i64>],
    answers: &[String],
    cfg: &SamplingConfig,
) -> Result<(usize, usize), RolloutError> {
    let verifier = MathVerifier::new(Default::default());
    let samples = generate(policy, prompts, cfg)?;
    let correct = samples
        .iter()
        .filter(|s| verifier.score(&answers[s.prompt_index], &s.text).correct)
        .count();
    Ok((correct, samples.len()))
}

/// [`pass_rate`] on dataset rows: each prompt rendered as [`Policy::prompt_ids`] does
/// (with the chat template when the policy has one).
pub fn math_accuracy(
    policy: &Policy,
    rows: &[MathExample],
    cfg: &SamplingConfig,
) -> Result<(usize, usize), RolloutError> {
    let templated = policy.chat_template.is_some();
    let prompts = rows
        .iter()
        .map(|r| policy.prompt_ids(&r.prompt.messages(), templated))
        .collect::<Result<Vec<_>, ModelError>>()?;
    let answers: Vec<String> = rows.iter().map(|r| r.answer.clone()).collect();
    pass_rate(policy, &prompts, &answers, cfg)
}
