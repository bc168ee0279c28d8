//! Multi-turn episodes: the engine against the local one and against one forward over the
//! finished sequence, observation tokens out of the loss, the Python tool's sessions and
//! hostile programs, 64 episodes in flight, and a killed run with tool episodes resuming.

use crate::learner_common::{Digits, dataset, small_config};
use cove::env::code_interpreter::PythonSession;
use cove::env::{CodeInterpreter, Environment, Observation, Placement, Reply, SingleTurn};
use cove::model::{LogprobOptions, Policy, response_logprobs};
use cove::rollout::{
    EpisodeLimits, FinishReason, LocalEngine, MultiTurnEngine, RolloutEngine, RolloutRequest,
    SamplingConfig, Trajectory,
};
use cove::trainer::Trainer;
use cove::verifiers::Score;
use cove::verifiers::code::{CodeConfig, CodeVerifier, Limits};
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

fn tiny() -> Policy {
    cove::model::tiny::policy(&Default::default(), 0, tch::Device::Cpu).unwrap()
}

/// The in-process sandbox, loaded once for the file.
fn runner() -> Arc<CodeVerifier> {
    static RUNNER: OnceLock<Arc<CodeVerifier>> = OnceLock::new();
    RUNNER
        .get_or_init(|| {
            Arc::new(
                CodeVerifier::new(CodeConfig::default())
                    .expect("run scripts/setup.sh to build the sandbox component"),
            )
        })
        .clone()
}

fn tool_limits() -> Limits {
    Limits {
        time: Duration::from_secs(2),
        memory_bytes: 128 << 20,
        stdout_bytes: 16 << 10,
        ..Limits::default()
    }
}

/// The Python tool with no task reward (its episodes score 0).
fn interpreter() -> CodeInterpreter<Digits> {
    CodeInterpreter::new(Digits, runner(), tool_limits(), 300)
}

const LIMITS: EpisodeLimits = EpisodeLimits {
    max_turns: 6,
    max_tool_calls: 3,
    max_total_tokens: 200,
};

fn request<'a>(
    prompts: &'a [Vec<i64>],
    tasks: &'a [usize],
    keys: &'a [u64],
    sampling: &'a SamplingConfig,
) -> RolloutRequest<'a> {
    RolloutRequest {
        prompts,
        tasks,
        keys,
        sampling,
        policy_version: 4,
    }
}

/// Prompts of the test dataset's first `count` examples, as plain text.
fn prompts(policy: &Policy, count: usize) -> Vec<Vec<i64>> {
    dataset()
        .iter()
        .take(count)
        .map(|e| policy.encode(e.prompt.user_text()).unwrap())
        .collect()
}

#[test]
fn a_single_turn_environment_samples_what_the_local_engine_samples_token_for_token() {
    let policy = tiny();
    let prompts = prompts(&policy, 4);
    let sampling = SamplingConfig {
        n: 3,
        max_new_tokens: 12,
        stop: vec!["7".into()],
        seed: 5,
        ..Default::default()
    };
    let (tasks, keys) = ([0, 1, 2, 3], [3, 9, 1, 4]);
    let req = request(&prompts, &tasks, &keys, &sampling);
    let local = LocalEngine.generate(&policy, &req).unwrap();
    let mut engine = MultiTurnEngine::new(SingleTurn(Digits), vec![(); 4], LIMITS);
    let episodes = engine.generate(&policy, &req).unwrap();
    assert_eq!(local.len(), episodes.len());
    let mut stops = 0;
    for (a, b) in local.iter().zip(&episodes) {
        assert_eq!(a.tokens, b.tokens);
        assert_eq!(a.loss_mask, b.loss_mask);
        // The same computation; MKL outside its strict mode (this test process does not
        // set it) may round the last bit differently between two runs of it.
        for (x, y) in [(&a.logprobs, &b.logprobs), (&a.entropies, &b.entropies)] {
            let (x, y) = (x.as_ref().unwrap(), y.as_ref().unwrap());
            assert_eq!(x.len(), y.len());
            assert!(
                x.iter().zip(y).all(|(x, y)| (x - y).abs() < 1e-5),
                "{x:?} {y:?}"
            );
        }
        assert_eq!((a.finish, &a.text), (b.finish, &b.text));
        assert_eq!((a.group, a.task, b.policy_version), (b.group, b.task, 4));
        assert_eq!(
            b.score,
            Some(cove::verifiers::Reward::score(&Digits, &(), &b.text))
        );
        stops += usize::from(a.finish == FinishReason::Stop);
    }
    assert!(
        stops > 0,
        "the stop string ended no sample: the test would not cover it"
    );
}

/// An environment that answers every turn of three characters or more, twice, with a
/// fixed observation placed as `placement` says, then ends the episode.
struct Scripted {
    placement: Placement,
}

impl Environment for Scripted {
    type Task = ();
    type Session = usize;

    fn name(&self) -> &str {
        "scripted"
    }

    fn turn_ends(&self, turn: &str) -> bool {
        turn.chars().count() >= 3
    }

    fn start(&self, _task: &()) -> usize {
        0
    }

    fn reply(&self, _task: &(), turns: &mut usize, _turn: &str, _calls_left: usize) -> Reply {
        *turns += 1;
        if *turns > 2 {
            return Reply::End;
        }
        Reply::Observe(Observation {
            text: format!("obs {turns}: 12+3"),
            placement: self.placement.clone(),
            tool_call: None,
        })
    }

    fn score(&self, _task: &(), turns: &usize, transcript: &str) -> Score {
        Score {
            reward: *turns as f64,
            correct: transcript.contains("obs 2"),
            details: String::new(),
        }
    }
}

/// Samples `prompts × 4` episodes of `env` and checks each against one forward over its
/// finished sequence: the recorded log-probs and entropies of the policy's tokens agree
/// within the single-turn tests' bound, and every observation token is masked.
fn check_against_one_forward<E: Environment<Task = ()>>(
    policy: &Policy,
    env: E,
    temperature: f64,
) -> Vec<Trajectory> {
    let prompts = prompts(policy, 3);
    let sampling = SamplingConfig {
        n: 4,
        temperature,
        max_new_tokens: 8,
        seed: 11,
        ..Default::default()
    };
    let mut engine = MultiTurnEngine::new(env, vec![(); 3], LIMITS);
    let episodes = engine
        .generate(
            policy,
            &request(&prompts, &[0, 1, 2], &[0, 1, 2], &sampling),
        )
        .unwrap();
    let pairs: Vec<(&[i64], &[i64])> = episodes
        .iter()
        .map(|t| (t.prompt(), t.response()))
        .collect();
    let opts = LogprobOptions {
        temperature,
        ..LogprobOptions::default()
    };
    let out = response_logprobs(policy.model.as_ref(), &pairs, policy.pad_token_id, &opts).unwrap();
    let mut observed = 0;
    for (b, t) in episodes.iter().enumerate() {
        t.check().unwrap();
        let lp = Vec::<f32>::try_from(out.logprobs.get(b as i64)).unwrap();
        let ent = Vec::<f32>::try_from(out.entropies.get(b as i64)).unwrap();
        let (rec_lp, rec_ent) = (t.logprobs.as_ref().unwrap(), t.entropies.as_ref().unwrap());
        for (j, &trained) in t.response_mask().iter().enumerate() {
            if trained {
                assert!(
                    (lp[j] - rec_lp[j]).abs() < 1e-4,
                    "episode {b} token {j}: {} vs {}",
                    lp[j],
                    rec_lp[j]
                );
                assert!((ent[j] - rec_ent[j]).abs() < 1e-4, "episode {b} token {j}");
            } else {
                observed += 1;
                assert_eq!((rec_lp[j], rec_ent[j]), (0.0, 0.0));
            }
        }
        let episode = t.episode.as_ref().unwrap();
        assert_eq!(
            episode.resumes.len(),
            episode
                .messages
                .iter()
                .filter(|m| m.role != "assistant")
                .count()
        );
    }
    assert!(
        observed > 0,
        "no episode saw an observation: the test would not cover them"
    );
    episodes
}

#[test]
fn episode_logprobs_equal_one_forward_over_the_finished_sequence() {
    let policy = tiny();
    let episodes = check_against_one_forward(
        &policy,
        Scripted {
            placement: Placement::Inline,
        },
        1.0,
    );
    // Inline observations are their text's tokens, right after the turn's last token.
    let obs = policy.encode("obs 1: 12+3").unwrap();
    let t = episodes
        .iter()
        .find(|t| t.episode.as_ref().unwrap().resumes.len() == 2)
        .unwrap();
    let first = t.episode.as_ref().unwrap().resumes[0];
    assert_eq!(&t.response()[first - obs.len()..first], obs.as_slice());
    assert!(
        t.response_mask()[first - obs.len()..first]
            .iter()
            .all(|&m| !m)
    );
    assert_eq!(t.score.as_ref().unwrap().reward, 3.0);
    assert!(t.text.contains("obs 1: 12+3") && t.text.contains("obs 2: 12+3"));
    // As a user message, through the chat template, at another temperature.
    let episodes = check_against_one_forward(
        &policy,
        Scripted {
            placement: Placement::Message("user".into()),
        },
        0.7,
    );
    let t = episodes
        .iter()
        .find(|t| !t.episode.as_ref().unwrap().resumes.is_empty())
        .unwrap();
    let messages = &t.episode.as_ref().unwrap().messages;
    assert_eq!(
        (messages[0].role.as_str(), messages[1].role.as_str()),
        ("assistant", "user")
    );
}

/// The same on SmolLM2, whose chat template renders the observation as a user turn.
#[test]
fn smollm2_episode_logprobs_equal_one_forward() {
    let policy = crate::model_smollm2::policy();
    let episodes = check_against_one_forward(
        &policy,
        Scripted {
            placement: Placement::Message("user".into()),
        },
        1.0,
    );
    // The observation went in as the template renders a user turn after the assistant's.
    let t = episodes
        .iter()
        .find(|t| !t.episode.as_ref().unwrap().resumes.is_empty())
        .unwrap();
    let resume = t.episode.as_ref().unwrap().resumes[0];
    let text = text_before(&policy, t, resume);
    assert!(
        text.ends_with("<|im_start|>user\nobs 1: 12+3<|im_end|>\n<|im_start|>assistant\n"),
        "{text:?}"
    );
}

/// The response of `t` up to `resume`, special tokens included.
fn text_before(policy: &Policy, t: &Trajectory, resume: usize) -> String {
    let ids: Vec<u32> = t.response()[..resume].iter().map(|&i| i as u32).collect();
    policy.tokenizer.decode(&ids, false).unwrap()
}

#[test]
fn observation_tokens_get_exactly_zero_gradient() {
    use cove::loss::{ControlConfig, LossConfig, single_batch_loss};
    let policy = tiny();
    let episodes = check_against_one_forward(
        &policy,
        Scripted {
            placement: Placement::Inline,
        },
        1.0,
    );
    let pairs: Vec<(&[i64], &[i64])> = episodes
        .iter()
        .map(|t| (t.prompt(), t.response()))
        .collect();
    let out = response_logprobs(
        policy.model.as_ref(),
        &pairs,
        policy.pad_token_id,
        &LogprobOptions::default(),
    )
    .unwrap();
    let width = out.logprobs.size()[1] as usize;
    let mut valid = vec![0f32; episodes.len() * width];
    for (b, t) in episodes.iter().enumerate() {
        for (j, &m) in t.response_mask().iter().enumerate() {
            valid[b * width + j] = f32::from(u8::from(m));
        }
    }
    let valid = tch::Tensor::from_slice(&valid).view([episodes.len() as i64, width as i64]);
    for control in [
        ControlConfig::None,
        ControlConfig::ClipCov {
            ratio: 0.2.into(),
            lb: -1.0,
            ub: 5.0,
        },
        ControlConfig::KlCov {
            ratio: 0.2.into(),
            beta: 1.0,
        },
    ] {
        let ctl = control.build().unwrap();
        let cfg = LossConfig {
            control,
            ..LossConfig::default()
        };
        let logp = out.logprobs.detach().set_requires_grad(true);
        let old_logp = out.logprobs.detach() - 0.05;
        let adv: Vec<f32> = (0..episodes.len()).map(|b| b as f32 - 5.5).collect();
        let adv = tch::Tensor::from_slice(&adv)
            .unsqueeze(1)
            .expand([-1, width as i64], true);
        let valid_bool = valid.gt(0.5);
        let tensors = cove::loss::TokenTensors {
            logp: &logp,
            old_logp: &old_logp,
            adv: &adv,
            valid: &valid_bool,
        };
        let loss = single_batch_loss(&cfg, ctl.as_ref(), &tensors, None, 0);
        loss.loss.backward();
        let grad = logp.grad();
        let masked = (&grad * valid.ones_like().f_sub(&valid).unwrap())
            .abs()
            .max()
            .double_value(&[]);
        let trained = (&grad * &valid).abs().max().double_value(&[]);
        assert_eq!(masked, 0.0, "{:?}", cfg.control);
        assert!(trained > 0.0, "{:?}", cfg.control);
    }
}

#[test]
fn a_python_session_keeps_its_state_within_an_episode_and_not_across() {
    let tool = interpreter();
    let (mut a, mut b) = (PythonSession::default(), PythonSession::default());
    assert_eq!(
        tool.call(&mut a, "x = 41\ndef inc(v):\n    return v + 1\n"),
        (String::new(), false)
    );
    assert_eq!(tool.call(&mut a, "print(inc(x))"), ("42\n".into(), false));
    // A REPL's last expression prints its repr.
    assert_eq!(
        tool.call(&mut a, "y = [x, 'a']\ny"),
        ("[41, 'a']\n".into(), false)
    );
    // What a raising program did before raising stays.
    let (text, error) = tool.call(&mut a, "z = 5\n1 / 0");
    assert!(error && text.contains("ZeroDivisionError"), "{text}");
    assert_eq!(tool.call(&mut a, "z + x"), ("46\n".into(), false));
    // Another episode sees none of it.
    let (text, error) = tool.call(&mut b, "print(x)");
    assert!(error && text.contains("NameError"), "{text}");
    // Replays print nothing: only the new program's output comes back.
    assert_eq!(tool.call(&mut a, "print('once')"), ("once\n".into(), false));
}

#[test]
fn hostile_programs_in_tool_calls_end_the_call_with_an_error_and_keep_the_session() {
    let tool = interpreter();
    let mut session = PythonSession::default();
    assert_eq!(
        tool.call(&mut session, "secret = 7"),
        (String::new(), false)
    );
    for (program, says) in [
        ("while True:\n    pass", "TimeoutError"),
        ("import time\ntime.sleep(30)", "TimeoutError"),
        ("x = bytearray(1 << 30)", "MemoryError"),
        ("while True:\n    print('x' * 1000)", "printed more than"),
        ("print(open('/etc/passwd').read())", "Error"),
        ("import os\nos.system('echo escaped')", "Error"),
        (
            "import socket\nsocket.create_connection(('127.0.0.1', 22))",
            "Error",
        ),
        ("def f(n):\n    return f(n + 1) + 1\nf(0)", "RecursionError"),
        ("import sys\nsys.exit(3)", ""),
        ("raise SystemExit", ""),
    ] {
        let (text, error) = tool.call(&mut session, program);
        assert!(text.contains(says), "{program}: {text}");
        assert!(error || says.is_empty(), "{program}: {text}");
        assert!(
            text.chars().count() < 400,
            "{program}: the output is cut: {text}"
        );
        assert!(!text.contains("root:"), "{program}: {text}");
        // The session survives, and the limits did not replay.
        assert_eq!(
            tool.call(&mut session, "print(secret)"),
            ("7\n".into(), false),
            "after {program}"
        );
    }
}

/// The program every [`Forced`] turn calls: it counts the calls of its session.
const COUNT: &str = "n = globals().get('n', 0) + 1\nprint(f'call {n}')";

/// Every turn of `chars` characters stands for `call` (a tool call in the tool's format)
/// and gets the tool's reply: the tiny policy writes no programs of its own.
struct Forced {
    tool: CodeInterpreter<Digits>,
    call: String,
    chars: usize,
}

impl Forced {
    /// [`COUNT`] as a fenced program.
    fn fenced() -> Self {
        Forced {
            tool: interpreter(),
            call: format!("```python\n{COUNT}\n```"),
            chars: 2,
        }
    }
}

impl Environment for Forced {
    type Task = ();
    type Session = PythonSession;

    fn name(&self) -> &str {
        "forced"
    }

    fn turn_ends(&self, turn: &str) -> bool {
        turn.chars().count() >= self.chars
    }

    fn start(&self, _task: &()) -> PythonSession {
        PythonSession::default()
    }

    fn reply(
        &self,
        task: &(),
        session: &mut PythonSession,
        _turn: &str,
        calls_left: usize,
    ) -> Reply {
        self.tool.reply(task, session, &self.call, calls_left)
    }

    fn score(&self, _task: &(), _session: &PythonSession, transcript: &str) -> Score {
        let calls = transcript.matches("call ").count();
        Score {
            reward: calls as f64,
            correct: calls == 3,
            details: String::new(),
        }
    }
}

#[test]
fn sixty_four_episodes_in_flight_each_with_its_own_session() {
    let policy = tiny();
    let prompts = prompts(&policy, 8);
    let sampling = SamplingConfig {
        n: 8,
        max_new_tokens: 6,
        seed: 2,
        ..Default::default()
    };
    let tasks: Vec<usize> = (0..8).collect();
    let keys: Vec<u64> = (0..8).collect();
    let mut engine = MultiTurnEngine::new(Forced::fenced(), vec![(); 8], LIMITS);
    let episodes = engine
        .generate(&policy, &request(&prompts, &tasks, &keys, &sampling))
        .unwrap();
    assert_eq!(episodes.len(), 64);
    let mut full = 0;
    for t in &episodes {
        t.check().unwrap();
        let episode = t.episode.as_ref().unwrap();
        // The k-th call of every episode counts k: its own session, none other's.
        let calls: Vec<&str> = episode
            .messages
            .iter()
            .filter(|m| m.role == "tool")
            .map(|m| m.content.as_str())
            .collect();
        let expected: Vec<String> = (1..=calls.len())
            .map(|k| format!("\n```output\ncall {k}\n```\n"))
            .collect();
        assert_eq!(calls, expected);
        assert_eq!(episode.tool_calls, calls.len());
        assert_eq!(episode.tool_errors, 0);
        if episode.tool_calls == 3 {
            full += 1;
            assert!(
                matches!(
                    t.finish,
                    FinishReason::ToolCalls | FinishReason::Eos | FinishReason::Length
                ),
                "{:?}",
                t.finish
            );
        }
    }
    assert!(
        full >= 32,
        "only {full} of 64 episodes made all three calls"
    );
}

const CHILD_ENV: &str = "COVE_TOOL_CRASH_CHILD";

/// A trainer whose rollouts are [`Forced`] episodes (real sandbox calls, stateful
/// sessions), checkpointing every step.
fn tool_trainer(out: &Path) -> Trainer<Digits> {
    let mut cfg = small_config(out);
    cfg.steps = 3;
    cfg.checkpoint.every = 1;
    cfg.checkpoint.keep = 10;
    cfg.rollout.max_new_tokens = 4;
    let engine = MultiTurnEngine::new(Forced::fenced(), vec![(); dataset().len()], LIMITS);
    Trainer::new(cfg, tiny(), Digits, dataset())
        .unwrap()
        .with_engine(Box::new(engine))
}

#[test]
fn a_killed_run_with_tool_episodes_resumes_exactly() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let mut t = tool_trainer(Path::new(&dir));
        t.run(|m| {
            if m.step == 2 {
                std::process::abort();
            }
            ControlFlow::Continue(())
        })
        .unwrap();
        unreachable!("the child aborts at step 2");
    }
    let crashed = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "env_tools::a_killed_run_with_tool_episodes_resumes_exactly",
            "--exact",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, crashed.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child must die");
    let mut resumed = tool_trainer(crashed.path());
    assert_eq!(resumed.resume().unwrap(), Some(1));
    let mut resumed_metrics = Vec::new();
    resumed
        .run(|m| {
            resumed_metrics.push(m.clone());
            ControlFlow::Continue(())
        })
        .unwrap();
    let clean = tempfile::tempdir().unwrap();
    let mut straight = tool_trainer(clean.path());
    let mut straight_metrics = Vec::new();
    straight
        .run(|m| {
            straight_metrics.push(m.clone());
            ControlFlow::Continue(())
        })
        .unwrap();
    for (a, b) in resumed.named_params().iter().zip(&straight.named_params()) {
        assert!(a.1.equal(&b.1), "{} differs after resume", a.0);
    }
    let tools = |m: &cove::metrics::StepMetrics| {
        let t = m.tools.expect("tool metrics");
        (
            t.call_rate,
            t.error_rate,
            t.entropy_after_tool,
            t.entropy_elsewhere,
        )
    };
    assert_eq!(
        resumed_metrics.iter().map(tools).collect::<Vec<_>>(),
        straight_metrics[1..].iter().map(tools).collect::<Vec<_>>()
    );
    assert!(
        straight_metrics
            .iter()
            .all(|m| m.tools.unwrap().call_rate > 1.0)
    );
}

/// The tiny policy with a template that has Qwen2.5's `<tool_call>` format.
fn tiny_with_tool_calls() -> Policy {
    let mut policy = tiny();
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tools/chat_template.jinja");
    let source = std::fs::read_to_string(&path).unwrap();
    policy.chat_template =
        Some(cove::model::ChatTemplate::new(&source, Vec::new(), &path).unwrap());
    policy
}

#[test]
fn the_tool_call_format_is_the_templates_and_answers_with_a_tool_message() {
    use cove::env::ToolFormat;
    let qwen_like = tiny_with_tool_calls();
    assert_eq!(ToolFormat::Auto.resolve(&qwen_like), ToolFormat::ToolCall);
    assert_eq!(ToolFormat::Auto.resolve(&tiny()), ToolFormat::Fenced);
    assert_eq!(ToolFormat::Fenced.resolve(&qwen_like), ToolFormat::Fenced);
    let tool = interpreter().with_format(ToolFormat::ToolCall);
    let opening = tool.opening(&"What is 6*7?".into()).messages();
    assert!(opening[0].role == "system" && opening[0].content.contains("<tool_call>"));
    let turn = "I will compute.\n<tool_call>\n{\"name\": \"python\", \"arguments\": {\"code\": \"x = 6 * 7\\nx\"}}\n</tool_call>";
    assert!(tool.turn_ends(turn) && !tool.turn_ends(&turn[..turn.len() - 3]));
    let mut session = tool.start(&());
    let Reply::Observe(seen) = tool.reply(&(), &mut session, turn, 3) else {
        panic!("no observation")
    };
    assert_eq!(
        (seen.text.as_str(), &seen.placement),
        ("42", &Placement::Message("tool".into()))
    );
    assert!(!seen.tool_call.unwrap().error);
    // A malformed call is a failed call the policy reads about, not a failed run.
    let bad = "<tool_call>\n{\"name\": \"python\", \"arguments\": {\"cmd\": \"ls\"}}\n</tool_call>";
    let Reply::Observe(seen) = tool.reply(&(), &mut session, bad, 3) else {
        panic!("no observation")
    };
    assert!(
        seen.tool_call.unwrap().error && seen.text.contains("no `code`"),
        "{}",
        seen.text
    );
    assert_eq!(
        tool.reply(&(), &mut session, "The answer is \\boxed{42}.", 3),
        Reply::End
    );
    assert_eq!(tool.reply(&(), &mut session, turn, 0), Reply::OverBudget);
}

#[test]
fn tool_call_episodes_read_tool_messages_through_the_template() {
    use cove::env::ToolFormat;
    let policy = tiny_with_tool_calls();
    let code = serde_json::to_string(COUNT).unwrap();
    let env = Forced {
        tool: interpreter().with_format(ToolFormat::ToolCall),
        call: format!(
            "<tool_call>{{\"name\": \"python\", \"arguments\": {{\"code\": {code}}}}}</tool_call>"
        ),
        chars: 3,
    };
    let episodes = check_against_one_forward(&policy, env, 1.0);
    let t = episodes
        .iter()
        .find(|t| t.episode.as_ref().unwrap().resumes.len() >= 2)
        .unwrap();
    let resume = t.episode.as_ref().unwrap().resumes[1];
    let text = text_before(&policy, t, resume);
    assert!(text.ends_with("<|im_end|>\n<|im_start|>user\n<tool_response>\ncall 2\n</tool_response><|im_end|>\n<|im_start|>assistant\n"), "{text:?}");
    let messages = &t.episode.as_ref().unwrap().messages;
    assert_eq!(
        (messages[1].role.as_str(), messages[1].content.as_str()),
        ("tool", "call 1")
    );
}

/// `train-math` trains with the Python tool from the command line: its sandbox workers are
/// the binary itself, and the step's metrics carry the tool metrics.
#[test]
fn train_math_runs_episodes_with_the_python_tool() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (ok, text) = crate::test_util::run_binary(
        env!("CARGO_BIN_EXE_train-math"),
        [
            "--steps",
            "1",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
            "--set",
            "model.path=\"tiny\"",
            "--set",
            "env.kind=\"code-interpreter\"",
            "--set",
            "data.eval_limit=4",
        ],
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("episodes with the Python tool (up to 4 turns, 3 calls)"),
        "{text}"
    );
    let line = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let m: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert!(m["tools"]["call_rate"].is_number(), "{m}");
    let bad = crate::test_util::run_binary(
        env!("CARGO_BIN_EXE_train-math"),
        [
            "--steps",
            "1",
            "--out",
            dir.path().join("refused").to_str().unwrap(),
            "--set",
            "env.max_turns=0",
            "--set",
            "model.path=\"tiny\"",
        ],
    );
    assert!(!bad.0 && bad.1.contains("env.max_turns"), "{}", bad.1);
}

/// `cove rollout` writes one line per episode with the fields scripted checks read.
#[test]
fn cove_rollout_writes_one_line_per_episode() {
    let dir = tempfile::tempdir().unwrap();
    for env in ["code-interpreter", "single-turn"] {
        let out = dir.path().join(format!("{env}.jsonl"));
        let (ok, text) = crate::test_util::run_binary(
            env!("CARGO_BIN_EXE_cove"),
            [
                "rollout",
                "--env",
                env,
                "--model",
                "tiny",
                "--input",
                "datasets/math/test.jsonl",
                "--limit",
                "2",
                "--samples",
                "3",
                "--max-new-tokens",
                "8",
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert!(ok, "{text}");
        assert!(text.contains("6 episodes (2 problems x 3)"), "{text}");
        let lines = std::fs::read_to_string(&out).unwrap();
        assert_eq!(lines.lines().count(), 6, "{env}");
        for line in lines.lines() {
            let e: serde_json::Value = serde_json::from_str(line).unwrap();
            let messages = e["messages"].as_array().unwrap();
            assert!(
                messages
                    .iter()
                    .all(|m| m["role"].is_string() && m["content"].is_string())
            );
            assert_eq!(messages.last().unwrap()["role"], "assistant", "{e}");
            assert!(e["tool_calls"].is_u64() && e["reward"].is_number(), "{e}");
            let (ids, mask) = (
                e["token_ids"].as_array().unwrap(),
                e["loss_mask"].as_array().unwrap(),
            );
            assert_eq!(ids.len(), mask.len());
            let prompt = e["prompt_len"].as_u64().unwrap() as usize;
            assert!(mask[..prompt].iter().all(|m| m == 0) && mask[prompt..].iter().all(|m| m == 1));
        }
        // With the tool, the system prompt explains it.
        let first: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
        let has_system = first["messages"][0]["role"] == "system";
        assert_eq!(has_system, env == "code-interpreter", "{first}");
    }
}
