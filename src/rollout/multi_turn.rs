//! The multi-turn engine: episodes of an [`Environment`] on the policy's KV cache.
//!
//! Every episode of the request (`prompts × n`) is in flight at once, one row of one
//! batched KV cache. Each step samples one token for every decoding row, exactly as the
//! local engine does (same random streams, same sampling rule). When a row's turn ends
//! (an EOS token, the environment's [`Environment::turn_ends`], a stop string), the
//! environment's reply runs on a thread of its own (a tool call in the sandbox's worker
//! processes) while the other rows keep decoding; the row waits. The reply is taken in
//! one forward later (a fixed point, so a run does not depend on how fast a tool was),
//! and its observation's tokens enter the same row of the cache in the next forward,
//! with loss mask 0: earlier turns are never prefilled again.
//!
//! A forward feeds each row its pending tokens (the last sampled token, or that and an
//! observation), right-aligned in a chunk as wide as the longest: the padding columns are
//! masked out of attention for good, and positions count only real tokens, so each row
//! computes what a forward over its own sequence computes (the tests check the recorded
//! log-probs against one forward over the finished sequence). Rows whose episode ended
//! leave the batch.
//!
//! With [`crate::env::SingleTurn`] the engine samples what [`super::LocalEngine`] samples,
//! token for token.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::thread::{Scope, ScopedJoinHandle};
use tch::{Kind, Tensor};

use super::local::{Prefilled, keep_rows, prefill};
use super::sampler::sample_step;
use super::{
    Episode, FinishReason, RolloutEngine, RolloutError, RolloutRequest, SamplingConfig, Trajectory,
};
use crate::env::{Environment, Observation, Placement, Reply};
use crate::model::lora::MergedAdapters;
use crate::model::{Message, Policy};

/// Limits of one episode (`[env]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpisodeLimits {
    /// Most assistant turns.
    pub max_turns: usize,
    /// Most tool calls.
    pub max_tool_calls: usize,
    /// Most tokens after the prompt, observations included.
    pub max_total_tokens: usize,
}

/// Episodes of `env` (see the module docs). `tasks` is the dataset the requests' task
/// indices point into.
pub struct MultiTurnEngine<E: Environment> {
    env: E,
    tasks: Vec<E::Task>,
    limits: EpisodeLimits,
}

impl<E: Environment> MultiTurnEngine<E> {
    /// An engine running `env` on `tasks` within `limits`.
    pub fn new(env: E, tasks: Vec<E::Task>, limits: EpisodeLimits) -> Self {
        MultiTurnEngine { env, tasks, limits }
    }
}

/// Where an episode is.
enum Phase<'scope, S> {
    /// Its row has logits for the next token (after the last forward).
    Decoding,
    /// The environment is answering the turn that ended at step `since`.
    Waiting {
        since: usize,
        reply: ScopedJoinHandle<'scope, (S, Reply)>,
        eos: bool,
    },
    /// Over.
    Done(FinishReason),
}

/// One episode while it runs.
struct Running<'scope, S> {
    prompt: usize,
    rng: ChaCha8Rng,
    session: Option<S>,
    /// Tokens after the prompt, with their mask, log-probs and entropies (0 for
    /// observation tokens).
    tokens: Vec<i64>,
    mask: Vec<bool>,
    logprobs: Vec<f32>,
    entropies: Vec<f32>,
    /// Where the current turn starts in `tokens`.
    turn_start: usize,
    turns: usize,
    /// Tokens not yet in the cache: the last sampled one, then an observation.
    pending: Vec<i64>,
    /// Position of the next token fed.
    position: i64,
    phase: Phase<'scope, S>,
    episode: Episode,
}

impl<E: Environment> RolloutEngine for MultiTurnEngine<E> {
    fn name(&self) -> &str {
        self.env.name()
    }

    fn generate(
        &mut self,
        policy: &Policy,
        request: &RolloutRequest,
    ) -> Result<Vec<Trajectory>, RolloutError> {
        let cfg = request.sampling;
        cfg.validate()?;
        super::local::check_prompts(policy, request.prompts, request.keys)?;
        if cfg.max_new_tokens == 0 {
            return Err(RolloutError::Config {
                field: "max_new_tokens".into(),
                message: "a multi-turn episode needs at least 1".into(),
            });
        }
        request.check_tasks()?;
        if let Some(&bad) = request.tasks.iter().find(|&&t| t >= self.tasks.len()) {
            return Err(RolloutError::Config {
                field: "tasks".into(),
                message: format!("task {bad} of {} tasks", self.tasks.len()),
            });
        }
        let this = &*self;
        std::thread::scope(|scope| this.run(scope, policy, request, cfg))
    }
}

impl<E: Environment> MultiTurnEngine<E> {
    fn run<'scope, 'env>(
        &'env self,
        scope: &'scope Scope<'scope, 'env>,
        policy: &Policy,
        request: &RolloutRequest,
        cfg: &SamplingConfig,
    ) -> Result<Vec<Trajectory>, RolloutError> {
        let _guard = tch::no_grad_guard();
        let model = policy.model.as_ref();
        let _merged = MergedAdapters::new(model);
        let device = model.device();
        let prompts = request.prompts;
        let n = cfg.n;
        let mut runs: Vec<Running<E::Session>> = (0..prompts.len() * n)
            .map(|i| {
                let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
                rng.set_stream(request.keys[i / n] * n as u64 + (i % n) as u64);
                Running {
                    prompt: i / n,
                    rng,
                    session: Some(self.env.start(&self.tasks[request.tasks[i / n]])),
                    tokens: Vec::new(),
                    mask: Vec::new(),
                    logprobs: Vec::new(),
                    entropies: Vec::new(),
                    turn_start: 0,
                    turns: 0,
                    pending: Vec::new(),
                    position: prompts[i / n].len() as i64,
                    phase: Phase::Decoding,
                    episode: Episode::default(),
                }
            })
            .collect();
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let to = |v: &[i64], rows: i64, cols: i64| {
            Tensor::from_slice(v).view([rows, cols]).to_device(device)
        };
        // The local engine's prefill: left-padded prompts, one per prompt, expanded to
        // its n samples.
        let Prefilled {
            mut cache,
            mut attn,
            mut last,
        } = prefill(policy, prompts, cfg)?;
        // Cache row r holds episode rows[r].
        let mut rows: Vec<usize> = (0..runs.len()).collect();
        for step in 0.. {
            // Sample for every decoding row (in row order, as the local engine does).
            let decoding: Vec<usize> = (0..rows.len())
                .filter(|&r| matches!(runs[rows[r]].phase, Phase::Decoding))
                .collect();
            if !decoding.is_empty() {
                let u: Vec<f32> = decoding
                    .iter()
                    .map(|&r| (1.0 - runs[rows[r]].rng.random::<f64>()) as f32)
                    .collect();
                let logits = if decoding.len() == rows.len() {
                    last.shallow_clone()
                } else {
                    let idx: Vec<i64> = decoding.iter().map(|&r| r as i64).collect();
                    last.index_select(0, &Tensor::from_slice(&idx).to_device(device))
                };
                let (tok, lp, ent) =
                    sample_step(&logits, cfg, &Tensor::from_slice(&u).to_device(device));
                let tok = Vec::<i64>::try_from(&tok)?;
                let lp = Vec::<f32>::try_from(&lp)?;
                let ent = Vec::<f32>::try_from(&ent)?;
                for (k, &r) in decoding.iter().enumerate() {
                    let run = &mut runs[rows[r]];
                    run.tokens.push(tok[k]);
                    run.mask.push(true);
                    run.logprobs.push(lp[k]);
                    run.entropies.push(ent[k]);
                    run.pending = vec![tok[k]];
                    self.after_token(scope, policy, request, cfg, run, step)?;
                }
            }
            // Take the replies due: those a whole forward old (the turn's last token was
            // fed in that forward, while the reply ran).
            for &e in &rows {
                let due = matches!(&runs[e].phase, Phase::Waiting { since, .. } if *since < step);
                if due {
                    self.take_reply(policy, &mut runs[e])?;
                }
            }
            // Rows whose episode ended leave the batch.
            let keep: Vec<usize> = (0..rows.len())
                .filter(|&r| !matches!(runs[rows[r]].phase, Phase::Done(_)))
                .collect();
            if keep.is_empty() {
                break;
            }
            if keep.len() < rows.len() {
                keep_rows(&mut cache, &mut attn, &keep);
                rows = keep.iter().map(|&r| rows[r]).collect();
            }
            // Feed every row its pending tokens, right-aligned in one chunk.
            let width = rows
                .iter()
                .map(|&e| runs[e].pending.len())
                .max()
                .unwrap_or(0);
            if width == 0 {
                continue;
            }
            let a = rows.len();
            let mut ids = vec![policy.pad_token_id; a * width];
            let mut valid = vec![0i64; a * width];
            let mut positions = vec![0i64; a * width];
            for (r, &e) in rows.iter().enumerate() {
                let run = &mut runs[e];
                let off = r * width + width - run.pending.len();
                for (j, &t) in run.pending.iter().enumerate() {
                    ids[off + j] = t;
                    valid[off + j] = 1;
                    positions[off + j] = run.position + j as i64;
                }
                run.position += run.pending.len() as i64;
                run.pending.clear();
            }
            let (a, w) = (a as i64, width as i64);
            attn = Tensor::cat(&[&attn, &to(&valid, a, w)], 1);
            let logits = model.forward(
                &to(&ids, a, w),
                &to(&positions, a, w),
                &attn,
                Some(&mut cache),
            )?;
            last = logits.select(1, w - 1).to_kind(Kind::Float);
        }
        runs.into_iter()
            .map(|run| self.trajectory(request, run))
            .collect()
    }

    /// Ends the turn or the episode when the token just sampled does, starting the
    /// environment's reply when the turn waits for it.
    fn after_token<'scope, 'env>(
        &'env self,
        scope: &'scope Scope<'scope, 'env>,
        policy: &Policy,
        request: &RolloutRequest,
        cfg: &SamplingConfig,
        run: &mut Running<'scope, E::Session>,
        step: usize,
    ) -> Result<(), RolloutError> {
        let token = *run.tokens.last().expect("a token was just sampled");
        let turn = &run.tokens[run.turn_start..];
        let is_eos = policy.eos_token_ids.contains(&token);
        let text = policy.decode(turn)?;
        let ended = is_eos
            || self.env.turn_ends(&text)
            || cfg.stop.iter().any(|s| text.contains(s.as_str()));
        if !ended {
            if turn.len() >= cfg.max_new_tokens || run.tokens.len() >= self.limits.max_total_tokens
            {
                run.episode.messages.push(Message::assistant(&text));
                run.phase = Phase::Done(FinishReason::Length);
            }
            return Ok(());
        }
        let text = if is_eos {
            text
        } else {
            cut_at_stop(text, &cfg.stop)
        };
        run.episode.messages.push(Message::assistant(&text));
        run.turns += 1;
        let reason = if is_eos {
            FinishReason::Eos
        } else {
            FinishReason::Stop
        };
        if run.turns >= self.limits.max_turns {
            run.phase = Phase::Done(match reason {
                FinishReason::Eos => FinishReason::Eos,
                _ => FinishReason::Turns,
            });
            return Ok(());
        }
        let mut session = run
            .session
            .take()
            .expect("a running episode has its session");
        let task = &self.tasks[request.tasks[run.prompt]];
        let calls_left = self
            .limits
            .max_tool_calls
            .saturating_sub(run.episode.tool_calls);
        let env = &self.env;
        let reply = std::thread::Builder::new()
            .name("cove-env".into())
            .spawn_scoped(scope, move || {
                let reply = env.reply(task, &mut session, &text, calls_left);
                (session, reply)
            })
            .map_err(|e| RolloutError::Environment {
                name: self.env.name().to_string(),
                message: format!("cannot start a thread for its reply: {e}"),
            })?;
        run.phase = Phase::Waiting {
            since: step,
            reply,
            eos: is_eos,
        };
        Ok(())
    }

    /// Waits for a waiting episode's reply and applies it: its observation joins the
    /// pending tokens (loss mask 0), or the episode ends.
    fn take_reply(
        &self,
        policy: &Policy,
        run: &mut Running<'_, E::Session>,
    ) -> Result<(), RolloutError> {
        let Phase::Waiting { reply, eos, .. } = std::mem::replace(&mut run.phase, Phase::Decoding)
        else {
            return Ok(());
        };
        let (session, reply) = reply.join().map_err(|_| RolloutError::Environment {
            name: self.env.name().to_string(),
            message: "its reply panicked".into(),
        })?;
        run.session = Some(session);
        let observation = match reply {
            Reply::End => {
                run.phase = Phase::Done(if eos {
                    FinishReason::Eos
                } else {
                    FinishReason::Stop
                });
                return Ok(());
            }
            Reply::OverBudget => {
                run.phase = Phase::Done(FinishReason::ToolCalls);
                return Ok(());
            }
            Reply::Observe(observation) => observation,
        };
        let ids = self.observation_ids(policy, &observation, eos)?;
        if ids.is_empty() {
            return Err(RolloutError::Environment {
                name: self.env.name().to_string(),
                message: "an observation with no tokens".into(),
            });
        }
        if let Some(call) = observation.tool_call {
            run.episode.tool_calls += 1;
            run.episode.tool_errors += usize::from(call.error);
            run.episode.tool_seconds += call.seconds;
        }
        let role = match &observation.placement {
            Placement::Inline => "tool",
            Placement::Message(role) => role.as_str(),
        };
        run.episode
            .messages
            .push(Message::new(role, &observation.text));
        if run.tokens.len() + ids.len() >= self.limits.max_total_tokens {
            run.phase = Phase::Done(FinishReason::Length);
            return Ok(());
        }
        run.tokens.extend_from_slice(&ids);
        run.mask.resize(run.tokens.len(), false);
        run.logprobs.resize(run.tokens.len(), 0.0);
        run.entropies.resize(run.tokens.len(), 0.0);
        run.pending.extend_from_slice(&ids);
        run.turn_start = run.tokens.len();
        run.episode.resumes.push(run.tokens.len());
        Ok(())
    }

    /// The token ids of an observation: its text as it is (inline), or the chat
    /// template's rendering of a new message and the next assistant header (the part a
    /// conversation gains from it, after the assistant's end-of-turn token when the turn
    /// ended with one).
    fn observation_ids(
        &self,
        policy: &Policy,
        observation: &Observation,
        after_eos: bool,
    ) -> Result<Vec<i64>, RolloutError> {
        let role = match &observation.placement {
            Placement::Inline => return Ok(policy.encode(&observation.text)?),
            Placement::Message(role) => role,
        };
        const MARK: &str = "\u{1}cove-turn\u{1}";
        let before = [Message::user("?"), Message::assistant(MARK)];
        let mut after = before.to_vec();
        after.push(Message::new(role, &observation.text));
        let rendered = policy.apply_chat_template(&after, true)?;
        let start = rendered.find(MARK).map(|i| i + MARK.len()).ok_or_else(|| {
            RolloutError::Environment {
                name: self.env.name().to_string(),
                message: "the chat template does not render an assistant message".into(),
            }
        })?;
        let mut rest = &rendered[start..];
        if after_eos {
            for &id in &policy.eos_token_ids {
                if let Some(text) = policy.tokenizer.id_to_token(id as u32)
                    && let Some(stripped) = rest.strip_prefix(text.as_str())
                {
                    rest = stripped;
                    break;
                }
            }
        }
        Ok(policy.encode(rest)?)
    }

    /// The finished episode as a trajectory, scored by the environment.
    fn trajectory(
        &self,
        request: &RolloutRequest,
        run: Running<'_, E::Session>,
    ) -> Result<Trajectory, RolloutError> {
        let prompt = &request.prompts[run.prompt];
        let finish = match run.phase {
            Phase::Done(reason) => reason,
            _ => FinishReason::Length,
        };
        let text: String = run
            .episode
            .messages
            .iter()
            .map(|m| m.content.as_str())
            .collect();
        let task_index = request.tasks[run.prompt];
        let session = run.session.expect("a finished episode has its session");
        let score = self.env.score(&self.tasks[task_index], &session, &text);
        let mut tokens = Vec::with_capacity(prompt.len() + run.tokens.len());
        tokens.extend_from_slice(prompt);
        tokens.extend_from_slice(&run.tokens);
        let mut loss_mask = vec![false; prompt.len()];
        loss_mask.extend_from_slice(&run.mask);
        Ok(Trajectory {
            task: task_index,
            group: run.prompt,
            prompt_len: prompt.len(),
            tokens,
            loss_mask,
            logprobs: Some(run.logprobs),
            entropies: Some(run.entropies),
            policy_version: request.policy_version,
            text,
            score: Some(score),
            finish,
            episode: Some(run.episode),
        })
    }
}

/// `text` cut before the first stop string it contains.
fn cut_at_stop(mut text: String, stop: &[String]) -> String {
    if let Some(cut) = stop.iter().filter_map(|s| text.find(s.as_str())).min() {
        text.truncate(cut);
    }
    text
}
