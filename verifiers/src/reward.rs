//! The `Reward` trait: how a task's response is scored.
//!
//! A reward sees the task's own data (a gold answer, a test suite; the associated type
//! [`Reward::Task`]) and one model response, and returns a [`Score`]. The math and code
//! verifiers implement it, and a user adding a custom task implements it once. It lives
//! in this crate (no libtorch) so that rewards can be used and tested on their own.

/// The outcome of scoring one response.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Score {
    /// The scalar reward fed to the advantage estimator.
    pub reward: f64,
    /// Whether the response solves the task (drives the accuracy metric).
    pub correct: bool,
    /// A short human-readable explanation (extracted answer, failing test, ...).
    pub details: String,
}

/// Scores responses for one kind of task. Implementations must be callable from many
/// threads at once: the trainer scores a batch of responses in parallel.
pub trait Reward: Send + Sync {
    /// What the reward needs to know about a task besides the response.
    type Task: Send + Sync;

    /// A short stable name, used in metrics and logs.
    fn name(&self) -> &str;

    /// Scores one response to `task`. Never panics on model output.
    fn score(&self, task: &Self::Task, response: &str) -> Score;
}

/// A boxed reward is a reward: rewards composed at run time (from configuration, as
/// `train-math`'s `[reward]` section does) are `Box<dyn Reward<Task = T>>`.
impl<R: Reward + ?Sized> Reward for Box<R> {
    type Task = R::Task;

    fn name(&self) -> &str {
        (**self).name()
    }

    fn score(&self, task: &R::Task, response: &str) -> Score {
        (**self).score(task, response)
    }
}

/// A shared reward is a reward: `train-code` scores training and held-out responses with
/// one `Arc<CodeVerifier>` (one pool of sandbox workers).
impl<R: Reward + ?Sized> Reward for std::sync::Arc<R> {
    type Task = R::Task;

    fn name(&self) -> &str {
        (**self).name()
    }

    fn score(&self, task: &R::Task, response: &str) -> Score {
        (**self).score(task, response)
    }
}

/// Weighted sum of rewards over the same task type: `sum_i w_i * r_i(task, response)`.
/// `correct` is the first component's (the primary verifier); `details` joins all.
pub struct WeightedSum<T> {
    parts: Vec<(f64, Box<dyn Reward<Task = T>>)>,
    name: String,
}

impl<T: Send + Sync> WeightedSum<T> {
    /// A sum of `(weight, reward)` parts; the first part decides `correct`.
    pub fn new(parts: Vec<(f64, Box<dyn Reward<Task = T>>)>) -> Self {
        let name = parts
            .iter()
            .map(|(w, r)| format!("{w}*{}", r.name()))
            .collect::<Vec<_>>()
            .join("+");
        WeightedSum { parts, name }
    }
}

impl<T: Send + Sync> Reward for WeightedSum<T> {
    type Task = T;

    fn name(&self) -> &str {
        &self.name
    }

    fn score(&self, task: &T, response: &str) -> Score {
        let mut reward = 0.0;
        let mut correct = None;
        let mut details = Vec::with_capacity(self.parts.len());
        for (w, r) in &self.parts {
            let s = r.score(task, response);
            reward += w * s.reward;
            correct.get_or_insert(s.correct);
            details.push(format!("{}: {}", r.name(), s.details));
        }
        Score {
            reward,
            correct: correct.unwrap_or(false),
            details: details.join("; "),
        }
    }
}

/// Adds `bonus` to the inner reward when the response has the expected format (a
/// predicate on the text, e.g. "contains a `\boxed{}` answer").
pub struct FormatBonus<R> {
    inner: R,
    bonus: f64,
    check: Box<dyn Fn(&str) -> bool + Send + Sync>,
    name: String,
}

impl<R: Reward> FormatBonus<R> {
    /// `inner` plus `bonus` when `check(response)` holds.
    pub fn new(inner: R, bonus: f64, check: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        let name = format!("{}+format", inner.name());
        FormatBonus {
            inner,
            bonus,
            check: Box::new(check),
            name,
        }
    }
}

impl<R: Reward> Reward for FormatBonus<R> {
    type Task = R::Task;

    fn name(&self) -> &str {
        &self.name
    }

    fn score(&self, task: &R::Task, response: &str) -> Score {
        let mut s = self.inner.score(task, response);
        if (self.check)(response) {
            s.reward += self.bonus;
            s.details.push_str("; format ok");
        } else {
            s.details.push_str("; format missing");
        }
        s
    }
}

/// The shape of DAPO's soft overlong punishment (Yu et al. 2025, eq. 13): 0 for a length
/// up to `max - buffer`, then falling linearly to `-penalty` at `max`, and `-penalty`
/// beyond (`buffer` 0: a step at `max`). [`LengthPenalty`] applies it to characters; the
/// trainer's `[reward] overlong` to tokens.
pub fn soft_length_penalty(len: usize, max: usize, buffer: usize, penalty: f64) -> f64 {
    let start = max - buffer.min(max);
    if len >= max {
        -penalty
    } else if len <= start {
        0.0
    } else {
        -penalty * (len - start) as f64 / (max - start) as f64
    }
}

/// [`soft_length_penalty`] on the inner reward, measured in characters (this crate has
/// no tokenizer).
pub struct LengthPenalty<R> {
    inner: R,
    max_chars: usize,
    buffer: usize,
    penalty: f64,
    name: String,
}

impl<R: Reward> LengthPenalty<R> {
    /// `inner` with the soft penalty (`buffer` is clamped to `max_chars`).
    pub fn new(inner: R, max_chars: usize, buffer: usize, penalty: f64) -> Self {
        let name = format!("{}+length", inner.name());
        LengthPenalty {
            inner,
            max_chars,
            buffer: buffer.min(max_chars),
            penalty,
            name,
        }
    }

    /// The penalty (<= 0) for a response of `len` characters.
    pub fn penalty_for(&self, len: usize) -> f64 {
        soft_length_penalty(len, self.max_chars, self.buffer, self.penalty)
    }
}

impl<R: Reward> Reward for LengthPenalty<R> {
    type Task = R::Task;

    fn name(&self) -> &str {
        &self.name
    }

    fn score(&self, task: &R::Task, response: &str) -> Score {
        let mut s = self.inner.score(task, response);
        let p = self.penalty_for(response.chars().count());
        if p != 0.0 {
            s.reward += p;
            s.details.push_str(&format!("; length penalty {p:.3}"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Exact;
    impl Reward for Exact {
        type Task = String;
        fn name(&self) -> &str {
            "exact"
        }
        fn score(&self, gold: &String, response: &str) -> Score {
            let ok = response.trim() == gold;
            Score {
                reward: if ok { 1.0 } else { 0.0 },
                correct: ok,
                details: String::new(),
            }
        }
    }

    struct Short;
    impl Reward for Short {
        type Task = String;
        fn name(&self) -> &str {
            "short"
        }
        fn score(&self, _: &String, response: &str) -> Score {
            Score {
                reward: if response.len() < 4 { 1.0 } else { 0.0 },
                correct: false,
                details: String::new(),
            }
        }
    }

    #[test]
    fn weighted_sum_adds_and_takes_correct_from_the_first() {
        let r = WeightedSum::new(vec![
            (1.0, Box::new(Exact) as _),
            (0.5, Box::new(Short) as _),
        ]);
        let s = r.score(&"42".to_string(), "42");
        assert_eq!(s.reward, 1.5);
        assert!(s.correct);
        assert_eq!(r.name(), "1*exact+0.5*short");
        assert_eq!(r.score(&"42".to_string(), "41 and more").reward, 0.0);
    }

    #[test]
    fn format_bonus_and_length_penalty() {
        let r = FormatBonus::new(Exact, 0.1, |t| t.starts_with('4'));
        assert!((r.score(&"42".to_string(), "42").reward - 1.1).abs() < 1e-12);
        assert_eq!(r.score(&"42".to_string(), "x").reward, 0.0);
        let l = LengthPenalty::new(Exact, 10, 4, 1.0);
        assert_eq!(l.penalty_for(6), 0.0);
        assert!((l.penalty_for(8) + 0.5).abs() < 1e-12);
        assert_eq!(l.penalty_for(10), -1.0);
        assert_eq!(l.penalty_for(50), -1.0);
        assert_eq!(l.score(&"42".to_string(), "42").reward, 1.0);
    }
}
