//! A reward computed by the user's own HTTP endpoint (`[reward] url`), typically a few
//! lines of Python beside the trainer: Cove posts a batch of `{prompt, response, task}`
//! items and reads back one score per item.
//!
//! ```text
//! POST <url>   {"items": [{"prompt": ..., "response": "...", "task": ...}, ...]}
//! 200          {"scores": [0.5, {"reward": 1.0, "details": "why"}, ...]}
//! ```
//! `prompt` is the dataset's prompt (a string, or a list of `{role, content}` messages),
//! `task` what the task's verifier reads (`{"answer": ...}` for math, `{"tests": ...}` for
//! code). A score is a number or an object with `reward` and optional `details`.
//!
//! Each request has a timeout; a request that fails to connect, times out or gets a 5xx or
//! 429 status is retried with exponential backoff; any other failure (a 4xx status, a reply
//! that is not the expected JSON, a count that does not match, a score that is not a finite
//! number) fails at once. Every error names the endpoint.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One response to score, as posted.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteItem<'a> {
    /// The dataset's prompt: a string or chat messages.
    pub prompt: &'a serde_json::Value,
    /// The model's response text.
    pub response: &'a str,
    /// The task's data (what its verifier reads).
    pub task: &'a serde_json::Value,
}

/// One score read back.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteScore {
    /// The reward.
    pub reward: f64,
    /// The endpoint's explanation, if it gave one.
    pub details: Option<String>,
}

/// A failure of the endpoint, naming it.
#[derive(Debug, thiserror::Error)]
#[error("reward endpoint {url}: {why}")]
pub struct RemoteError {
    /// The endpoint.
    pub url: String,
    /// What went wrong.
    pub why: String,
}

/// The body of a request.
#[derive(Serialize)]
struct Request<'a> {
    items: &'a [RemoteItem<'a>],
}

/// The body of a reply.
#[derive(Deserialize)]
struct Reply {
    scores: Vec<ReplyScore>,
}

/// A score as the endpoint may write it.
#[derive(Deserialize)]
#[serde(untagged)]
enum ReplyScore {
    Number(f64),
    Object {
        reward: f64,
        #[serde(default)]
        details: Option<String>,
    },
}

/// Why one attempt failed, and whether another may succeed.
struct Attempt {
    why: String,
    retry: bool,
}

/// A client of one scoring endpoint.
pub struct RemoteReward {
    url: String,
    agent: ureq::Agent,
    retries: u32,
    batch_size: usize,
}

impl RemoteReward {
    /// A client of `url` (plain `http://`: the endpoint is meant to run beside the
    /// trainer, and no TLS stack is built in) with a `timeout` per request, `retries`
    /// more attempts after a retryable failure, and at most `batch_size` items per
    /// request.
    pub fn new(
        url: &str,
        timeout: Duration,
        retries: u32,
        batch_size: usize,
    ) -> Result<RemoteReward, RemoteError> {
        let error = |why: &str| RemoteError {
            url: url.to_string(),
            why: why.to_string(),
        };
        if !url.starts_with("http://") {
            return Err(error(
                "only http:// URLs are supported (no TLS stack is built in; run the \
                 endpoint beside the trainer)",
            ));
        }
        if batch_size == 0 {
            return Err(error("batch_size must be at least 1"));
        }
        if timeout.is_zero() {
            return Err(error("the timeout must be positive"));
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(RemoteReward {
            url: url.to_string(),
            agent,
            retries,
            batch_size,
        })
    }

    /// The endpoint.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Scores `items`, `batch_size` per request, in order.
    pub fn score(&self, items: &[RemoteItem]) -> Result<Vec<RemoteScore>, RemoteError> {
        let mut scores = Vec::with_capacity(items.len());
        for chunk in items.chunks(self.batch_size) {
            scores.extend(self.post(chunk)?);
        }
        Ok(scores)
    }

    /// One request, with retries.
    fn post(&self, items: &[RemoteItem]) -> Result<Vec<RemoteScore>, RemoteError> {
        let mut attempt = 0;
        loop {
            match self.attempt(items) {
                Ok(scores) => return Ok(scores),
                Err(failed) if failed.retry && attempt < self.retries => {
                    std::thread::sleep(Duration::from_millis(250 << attempt.min(6)));
                    attempt += 1;
                }
                Err(failed) => {
                    let why = if failed.retry {
                        format!("{} (after {} attempts)", failed.why, attempt + 1)
                    } else {
                        failed.why
                    };
                    return Err(RemoteError {
                        url: self.url.clone(),
                        why,
                    });
                }
            }
        }
    }

    /// One attempt at one request.
    fn attempt(&self, items: &[RemoteItem]) -> Result<Vec<RemoteScore>, Attempt> {
        let fail = |why: String, retry: bool| Attempt { why, retry };
        let mut reply = self
            .agent
            .post(&self.url)
            .send_json(Request { items })
            .map_err(|e| fail(e.to_string(), true))?;
        let status = reply.status().as_u16();
        let body = reply
            .body_mut()
            .read_to_string()
            .map_err(|e| fail(format!("reading the reply: {e}"), true))?;
        if status != 200 {
            let excerpt: String = body.chars().take(300).collect();
            return Err(fail(
                format!("HTTP {status}: {excerpt}"),
                status >= 500 || status == 429,
            ));
        }
        let reply: Reply = serde_json::from_str(&body).map_err(|e| {
            fail(
                format!(
                    "the reply is not {{\"scores\": [number or {{\"reward\": number, \
                     \"details\": string}}, ...]}}: {e}"
                ),
                false,
            )
        })?;
        if reply.scores.len() != items.len() {
            return Err(fail(
                format!(
                    "the reply has {} scores for {} items",
                    reply.scores.len(),
                    items.len()
                ),
                false,
            ));
        }
        reply
            .scores
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let (reward, details) = match s {
                    ReplyScore::Number(reward) => (reward, None),
                    ReplyScore::Object { reward, details } => (reward, details),
                };
                if reward.is_finite() {
                    Ok(RemoteScore { reward, details })
                } else {
                    Err(fail(format!("score {i} is not a finite number"), false))
                }
            })
            .collect()
    }
}
