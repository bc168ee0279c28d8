//! Rewards from configuration: the `[reward]` section of `train-math` and `train-code`.
//!
//! ```text
//! reward = verifier_weight · verifier          (math answer / code tests; decides `correct`)
//!        + format_bonus   · [response matches format_pattern]
//!        + length_penalty                      (soft, in characters)
//!        + overlong                            (DAPO's soft overlong punishment, in tokens)
//!        + url_weight     · the user's endpoint (a batch scorer over HTTP, see [`remote`])
//! ```
//!
//! The first three read only the response text: [`RewardSection::compose`] builds them
//! from `cove_verifiers`' combinators ([`WeightedSum`], [`FormatBonus`],
//! [`LengthPenalty`]) into one [`Reward`]. The last two need what a `Reward` does not see,
//! the response's token count and, for an endpoint, the prompt and a whole batch at once,
//! so they are [`Shaping`], a stage of the trainer's scoring
//! ([`crate::trainer::Trainer::with_shaping`]) that runs after the reward.

pub mod remote;

pub use remote::{RemoteError, RemoteItem, RemoteReward, RemoteScore};

use crate::config::ConfigError;
use crate::rollout::Trajectory;
use cove_verifiers::reward::{FormatBonus, LengthPenalty, WeightedSum, soft_length_penalty};
use cove_verifiers::{Reward, Score};
use std::time::Duration;

/// The `[reward]` section.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RewardSection {
    /// Weight of the task's verifier (0: it only decides `correct`, the accuracy metric).
    pub verifier_weight: f64,
    /// Added when the response matches `format_pattern` (0: off).
    pub format_bonus: f64,
    /// A regular expression the response must match for the bonus; absent: the task's
    /// own (`\boxed{` for math, a fenced code block for code).
    pub format_pattern: Option<String>,
    /// A soft penalty on long responses, in characters.
    pub length_penalty: Option<LengthSection>,
    /// DAPO's soft overlong punishment, in tokens, up to `trainer.rollout.max_new_tokens`.
    pub overlong: Option<OverlongSection>,
    /// A batch scorer over HTTP (see [`remote`]); absent: none.
    pub url: Option<String>,
    /// Weight of the endpoint's score.
    pub url_weight: f64,
    /// Seconds one request to `url` may take.
    pub timeout_s: f64,
    /// More attempts after a request fails to connect, times out or gets a 5xx / 429.
    pub retries: u32,
    /// Items per request.
    pub batch_size: usize,
}

impl Default for RewardSection {
    fn default() -> Self {
        RewardSection {
            verifier_weight: 1.0,
            format_bonus: 0.0,
            format_pattern: None,
            length_penalty: None,
            overlong: None,
            url: None,
            url_weight: 1.0,
            timeout_s: 30.0,
            retries: 2,
            batch_size: 256,
        }
    }
}

/// `[reward.length_penalty]`: 0 up to `max_chars - buffer` characters, then falling
/// linearly to `-penalty` at `max_chars`, and `-penalty` beyond.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LengthSection {
    /// Where the full penalty is reached.
    pub max_chars: usize,
    /// How many characters before `max_chars` the penalty starts.
    pub buffer: usize,
    /// The full penalty (a positive number is subtracted).
    pub penalty: f64,
}

/// `[reward.overlong]`: DAPO's soft overlong punishment with `L_max` the rollout's
/// `max_new_tokens` and `L_cache = buffer`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlongSection {
    /// `L_cache`: how many tokens before the limit the punishment starts.
    pub buffer: usize,
    /// The punishment at the limit (DAPO: 1).
    pub penalty: f64,
}

/// DAPO's soft overlong punishment (Yu et al. 2025, eq. 13): 0 for `len <= max - buffer`,
/// then `penalty * ((max - buffer) - len) / buffer` down to `-penalty` at `max` tokens
/// (a response cut at the limit gets the whole punishment).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Overlong {
    /// `L_max`, in tokens.
    pub max_tokens: usize,
    /// `L_cache`, in tokens (`0 < buffer <= max_tokens`).
    pub buffer: usize,
    /// The punishment at `max_tokens`.
    pub penalty: f64,
}

impl Overlong {
    /// The reward added (`<= 0`) to a response of `len` tokens.
    pub fn reward(&self, len: usize) -> f64 {
        soft_length_penalty(len, self.max_tokens, self.buffer, self.penalty)
    }
}

fn invalid(field: &'static str, why: String) -> ConfigError {
    ConfigError::Invalid {
        path: "<config>".into(),
        field,
        why,
    }
}

impl RewardSection {
    /// Checks every field against the rollout's `max_new_tokens`; the error names the
    /// field.
    pub fn validate(&self, max_new_tokens: usize) -> Result<(), ConfigError> {
        let finite = |field, v: f64| match v.is_finite() {
            true => Ok(()),
            false => Err(invalid(field, format!("{v} is not a finite number"))),
        };
        finite("reward.verifier_weight", self.verifier_weight)?;
        finite("reward.format_bonus", self.format_bonus)?;
        finite("reward.url_weight", self.url_weight)?;
        if let Some(pattern) = &self.format_pattern {
            regex::Regex::new(pattern)
                .map_err(|e| invalid("reward.format_pattern", e.to_string()))?;
        }
        if let Some(l) = &self.length_penalty {
            finite("reward.length_penalty.penalty", l.penalty)?;
            if l.max_chars == 0 || l.buffer > l.max_chars {
                return Err(invalid(
                    "reward.length_penalty",
                    format!(
                        "needs 0 <= buffer <= max_chars and max_chars > 0 (got buffer {}, \
                         max_chars {})",
                        l.buffer, l.max_chars
                    ),
                ));
            }
        }
        if let Some(o) = &self.overlong {
            finite("reward.overlong.penalty", o.penalty)?;
            if o.buffer == 0 || o.buffer > max_new_tokens {
                return Err(invalid(
                    "reward.overlong.buffer",
                    format!(
                        "{} must lie in 1..=trainer.rollout.max_new_tokens ({max_new_tokens})",
                        o.buffer
                    ),
                ));
            }
        }
        if self.url.is_some() {
            if !(self.timeout_s.is_finite() && self.timeout_s > 0.0) {
                return Err(invalid(
                    "reward.timeout_s",
                    format!("{} must be positive", self.timeout_s),
                ));
            }
            if self.batch_size == 0 {
                return Err(invalid("reward.batch_size", "must be at least 1".into()));
            }
        }
        Ok(())
    }

    /// The text-level reward: `verifier` weighted, with the format bonus (matching
    /// `format_pattern`, else `default_pattern`) and the length penalty when set. With
    /// the defaults it is `verifier` itself.
    pub fn compose<R: Reward + 'static>(
        &self,
        verifier: R,
        default_pattern: &str,
    ) -> Result<Box<dyn Reward<Task = R::Task>>, ConfigError> {
        let mut reward: Box<dyn Reward<Task = R::Task>> = if self.verifier_weight == 1.0 {
            Box::new(verifier)
        } else {
            Box::new(WeightedSum::new(vec![(
                self.verifier_weight,
                Box::new(verifier) as Box<dyn Reward<Task = R::Task>>,
            )]))
        };
        if self.format_bonus != 0.0 {
            let pattern = self.format_pattern.as_deref().unwrap_or(default_pattern);
            let format = regex::Regex::new(pattern)
                .map_err(|e| invalid("reward.format_pattern", e.to_string()))?;
            reward = Box::new(FormatBonus::new(reward, self.format_bonus, move |text| {
                format.is_match(text)
            }));
        }
        if let Some(l) = self.length_penalty {
            reward = Box::new(LengthPenalty::new(reward, l.max_chars, l.buffer, l.penalty));
        }
        Ok(reward)
    }

    /// The trajectory-level stage: the overlong punishment (with `L_max =
    /// max_new_tokens`) and the endpoint, which posts each example's `prompts[i]` and
    /// `tasks[i]` (JSON, one per dataset example). `None` when neither is set.
    pub fn shaping(
        &self,
        max_new_tokens: usize,
        prompts: Vec<serde_json::Value>,
        tasks: Vec<serde_json::Value>,
    ) -> Result<Option<Shaping>, ConfigError> {
        self.validate(max_new_tokens)?;
        let overlong = self.overlong.map(|o| Overlong {
            max_tokens: max_new_tokens,
            buffer: o.buffer,
            penalty: o.penalty,
        });
        let remote = match &self.url {
            None => None,
            Some(url) => Some(Remote {
                weight: self.url_weight,
                client: RemoteReward::new(
                    url,
                    Duration::from_secs_f64(self.timeout_s),
                    self.retries,
                    self.batch_size,
                )
                .map_err(|e| invalid("reward.url", e.why))?,
                prompts,
                tasks,
            }),
        };
        if overlong.is_none() && remote.is_none() {
            return Ok(None);
        }
        Ok(Some(Shaping { overlong, remote }))
    }
}

/// An endpoint with its weight and what it is told about each example.
struct Remote {
    weight: f64,
    client: RemoteReward,
    prompts: Vec<serde_json::Value>,
    tasks: Vec<serde_json::Value>,
}

/// The reward terms that read a whole trajectory or a whole batch, added to each
/// trajectory's score after its [`Reward`]: DAPO's overlong punishment (by the count of
/// the policy's own tokens) and a remote endpoint's weighted score.
pub struct Shaping {
    overlong: Option<Overlong>,
    remote: Option<Remote>,
}

impl Shaping {
    /// Adds the terms to the scores of `trajectories` (each already scored by the
    /// reward; its `task` indexes the dataset the shaping was built for). One request
    /// batch per `batch_size` trajectories goes to the endpoint.
    pub fn apply(&self, trajectories: &mut [&mut Trajectory]) -> Result<(), RemoteError> {
        if let Some(o) = &self.overlong {
            for t in trajectories.iter_mut() {
                let len = t.response_mask().iter().filter(|&&m| m).count();
                add(t, o.reward(len), || {
                    format!("overlong {:.3}", o.reward(len))
                });
            }
        }
        if let Some(r) = &self.remote {
            let items: Vec<RemoteItem> = trajectories
                .iter()
                .map(|t| RemoteItem {
                    prompt: &r.prompts[t.task],
                    response: &t.text,
                    task: &r.tasks[t.task],
                })
                .collect();
            let scores = r.client.score(&items)?;
            for (t, s) in trajectories.iter_mut().zip(scores) {
                let details = s.details.as_deref().unwrap_or("");
                add(t, r.weight * s.reward, || {
                    format!("{}: {} {details}", r.client.url(), s.reward)
                });
            }
        }
        Ok(())
    }
}

/// Adds `term` to `t`'s score, with a note in its details when it is not zero.
fn add(t: &mut Trajectory, term: f64, note: impl FnOnce() -> String) {
    let score = t.score.get_or_insert_with(|| Score {
        reward: 0.0,
        correct: false,
        details: String::new(),
    });
    if term != 0.0 {
        score.reward += term;
        score.details.push_str("; ");
        score.details.push_str(note().trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DAPO's eq. 13 at L_max = 20, L_cache = 4: 0 through 16 tokens, then -1/4 per
    /// token, -1 at 20 and beyond.
    #[test]
    fn overlong_is_dapos_soft_punishment() {
        let o = Overlong {
            max_tokens: 20,
            buffer: 4,
            penalty: 1.0,
        };
        let got: Vec<f64> = [0, 16, 17, 18, 19, 20, 25].map(|n| o.reward(n)).to_vec();
        assert_eq!(got, vec![0.0, 0.0, -0.25, -0.5, -0.75, -1.0, -1.0]);
    }

    struct Exact;
    impl Reward for Exact {
        type Task = String;
        fn name(&self) -> &str {
            "exact"
        }
        fn score(&self, gold: &String, response: &str) -> Score {
            let ok = response.contains(gold.as_str());
            Score {
                reward: ok as u8 as f64,
                correct: ok,
                details: String::new(),
            }
        }
    }

    #[test]
    fn compose_weights_bonus_and_penalty() {
        let section = RewardSection {
            verifier_weight: 0.5,
            format_bonus: 0.25,
            length_penalty: Some(LengthSection {
                max_chars: 20,
                buffer: 10,
                penalty: 1.0,
            }),
            ..RewardSection::default()
        };
        let r = section.compose(Exact, r"\\boxed\{").unwrap();
        let gold = "7".to_string();
        // 0.5 * 1 + 0.25 (boxed), 10 chars: no penalty.
        let s = r.score(&gold, "\\boxed{7}.");
        assert_eq!(s.reward, 0.75);
        assert!(s.correct);
        // Wrong, unboxed, 15 chars: -0.5 length penalty only; `correct` stays the verifier's.
        let s = r.score(&gold, "the answer is 8");
        assert_eq!(s.reward, -0.5);
        assert!(!s.correct);
        // A weight of 0 keeps `correct`.
        let zero = RewardSection {
            verifier_weight: 0.0,
            ..RewardSection::default()
        };
        let s = zero.compose(Exact, "x").unwrap().score(&gold, "7");
        assert_eq!((s.reward, s.correct), (0.0, true));
        // The defaults are the verifier itself.
        let plain = RewardSection::default().compose(Exact, "x").unwrap();
        assert_eq!(plain.name(), "exact");
    }

    #[test]
    fn validation_names_the_field() {
        let bad = |s: RewardSection| s.validate(32).unwrap_err().to_string();
        let e = bad(RewardSection {
            overlong: Some(OverlongSection {
                buffer: 64,
                penalty: 1.0,
            }),
            ..RewardSection::default()
        });
        assert!(e.contains("reward.overlong.buffer"), "{e}");
        let e = bad(RewardSection {
            format_pattern: Some("(".into()),
            ..RewardSection::default()
        });
        assert!(e.contains("reward.format_pattern"), "{e}");
        let e = RewardSection {
            url: Some("https://example.com".into()),
            ..RewardSection::default()
        }
        .shaping(32, vec![], vec![])
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("reward.url") && e.contains("http://"), "{e}");
    }
}
