//! The two bundled tasks, math and code: each one's configuration (embedded defaults
//! plus the TOML sections a user may override) and how it becomes a [`Trainer`].
//!
//! The binaries `train-math` and `train-code` only parse arguments and hand one of
//! these to the command line's training loop; keeping the types here lets the tests
//! check that every recipe in `configs/` resolves and validates.

use crate::config::{ConfigError, TrainConfig};
use crate::data::code::{CodeExample, CodeLayout, load_code};
use crate::data::math::{MathExample, MathFields, load_math};
use crate::dist::Launch;
use crate::env::{CodeInterpreter, EnvKind, EnvSection, Environment};
use crate::eval::{EvalScores, code_scores, episode_scores, math_scores, prompt_ids};
use crate::model::{Dtype, ModelSpec};
use crate::optim::Precision;
use crate::reward::RewardSection;
use crate::rollout::{MultiTurnEngine, SamplingConfig};
use crate::trainer::{Evaluation, Example, Trainer};
use crate::verifiers::Reward;
use crate::verifiers::code::{CodeConfig, CodeVerifier, TestSuite, WorkerCommand};
use crate::verifiers::math::{MathOptions, MathVerifier};
use std::path::PathBuf;
use std::sync::Arc;

/// The `[run]` section of a training binary's configuration.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunOptions {
    /// Entropy-collapse warning threshold (fraction of the start entropy).
    pub entropy_warn_fraction: f64,
    /// libtorch intra-op threads (0: libtorch's default).
    pub threads: i32,
}

/// The one place training precision is decided: the model is loaded in `model.dtype` and
/// trained in `trainer.precision`, which casts it. A model loaded in bf16 or f16 has no
/// f32 weights left to keep as masters, so it trains only under `precision = "bf16"`
/// (pure bf16, said explicitly); anything else is refused, naming both fields.
pub fn check_precision(model: &ModelSpec, trainer: &TrainConfig) -> Result<(), ConfigError> {
    if model.dtype == Dtype::F32 || trainer.precision == Precision::Bf16 {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        path: "<config>".into(),
        field: "model.dtype",
        why: format!(
            "{:?} weights under trainer.precision = {:?} would train without f32 weights; \
             load in f32 (`model.dtype = \"f32\"`) and set `trainer.precision = \"bf16-mixed\"` \
             for f32 masters, or `trainer.precision = \"bf16\"` for pure bf16",
            model.dtype, trainer.precision
        ),
    })
}

/// What building a trainer from a task configuration can fail on.
pub type BuildResult<R> = Result<(Trainer<R>, RunOptions), Box<dyn std::error::Error>>;

/// Gives `trainer` the frozen reference of its `trainer.ref_kl` penalty, if it has one:
/// the starting model as `model` loads it. Under LoRA that is the policy's own base
/// weights with the adapters off (no second copy); otherwise the model is loaded again
/// and cast to the policy's compute dtype (bf16 under `bf16-mixed`), so the penalty
/// starts at exactly 0. Every recipe's `build` calls it, so `ref_kl` works from the
/// binaries.
pub fn with_ref_kl_reference<R: Reward>(
    trainer: Trainer<R>,
    model: &ModelSpec,
    launch: &Launch,
) -> Result<Trainer<R>, Box<dyn std::error::Error>> {
    if trainer.config().ref_kl.is_none() {
        return Ok(trainer);
    }
    if model.lora.is_some() {
        return Ok(trainer.with_adapter_base_reference()?);
    }
    let frozen = ModelSpec {
        lora: None,
        ..model.clone()
    };
    let mut reference = frozen.load(launch)?;
    let kind = trainer.policy().model.kind();
    reference.model.var_store_mut().set_kind(kind);
    Ok(trainer.with_reference(reference))
}

/// `train-math`'s reward: the math verifier as `[reward]` composes it.
pub type MathReward = Box<dyn Reward<Task = String>>;

/// `train-code`'s reward: the code verifier as `[reward]` composes it.
pub type CodeReward = Box<dyn Reward<Task = TestSuite>>;

/// The format bonus's default pattern for math: a `\boxed{...}` answer.
pub const MATH_FORMAT: &str = r"\\boxed\{";

/// The format bonus's default pattern for code: a fenced code block.
pub const CODE_FORMAT: &str = r"```";

/// Every example's prompt as JSON (a string or chat messages), as `[reward] url` posts it.
fn prompts_json<T>(data: &[Example<T>]) -> Vec<serde_json::Value> {
    data.iter()
        .map(|e| serde_json::to_value(&e.prompt).unwrap_or_default())
        .collect()
}

/// Keeps the rows whose level is one of `levels` (empty or absent: every row), then the
/// first `limit`. A filter that keeps none of a file's rows is an error naming
/// `data.levels` (a file without levels, such as GSM8K, needs `data.levels = []`).
fn select<T>(
    mut rows: Vec<T>,
    level: impl Fn(&T) -> Option<u32>,
    levels: Option<&[u32]>,
    path: &std::path::Path,
    limit: Option<usize>,
) -> Result<Vec<T>, Box<dyn std::error::Error>> {
    if let Some(levels) = levels.filter(|l| !l.is_empty()) {
        let before = rows.len();
        rows.retain(|r| level(r).is_some_and(|l| levels.contains(&l)));
        if rows.is_empty() && before > 0 {
            return Err(format!(
                "data.levels = {levels:?} keeps none of the {before} rows of {} (a row \
                 matches by its `level`, a number or \"Level N\"); set `data.levels = []` \
                 (`--set data.levels=[]`) to take every row",
                path.display()
            )
            .into());
        }
    }
    rows.truncate(limit.unwrap_or(usize::MAX));
    Ok(rows)
}

/// Prints the starting policy's held-out pass@1, the first figure of a run.
fn print_start(binary: &str, sampling: &SamplingConfig, held_out: &str, s: &EvalScores) {
    eprintln!(
        "{binary}: starting pass@1 at T = {} on {held_out}: {:.1}% ({}/{})",
        sampling.temperature,
        100.0 * s.pass_at_1,
        s.correct,
        s.problems
    );
}

/// What a data selection is, for the first lines of a run.
fn describe(path: &std::path::Path, rows: usize, levels: Option<&[u32]>) -> String {
    match levels.filter(|l| !l.is_empty()) {
        Some(levels) => format!("{rows} problems of {} (levels {levels:?})", path.display()),
        None => format!("{rows} problems of {}", path.display()),
    }
}

/// `train-math`'s embedded defaults (`configs/train-math.toml`).
pub const MATH_DEFAULTS: &str = include_str!("../configs/train-math.toml");

/// `train-code`'s embedded defaults (`configs/train-code.toml`).
pub const CODE_DEFAULTS: &str = include_str!("../configs/train-code.toml");

/// The `[data]` section of a math run.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MathData {
    /// JSONL or verl Parquet file.
    pub train: PathBuf,
    /// Field mapping (default: detected from the first row).
    pub fields: Option<MathFields>,
    /// Use only the first N rows (after the level filter).
    pub limit: Option<usize>,
    /// Keep only rows whose `level` is one of these (MATH and the synthetic set have
    /// levels: a number, or MATH's "Level N"); applies to `eval` too. Empty or absent:
    /// every row.
    pub levels: Option<Vec<u32>>,
    /// A held-out file: before training, the starting policy's pass@1 on it (one sample
    /// per problem at the rollout temperature) is measured and printed.
    pub eval: Option<PathBuf>,
    /// Use only the first N rows of `eval`.
    pub eval_limit: Option<usize>,
}

impl MathData {
    /// Loads `path` with the configured fields, level filter and `limit`. A level
    /// filter that keeps none of a file's rows is an error naming `data.levels` (a file
    /// without levels, such as GSM8K, needs `data.levels = []`).
    fn load(
        &self,
        path: &std::path::Path,
        limit: Option<usize>,
    ) -> Result<Vec<MathExample>, Box<dyn std::error::Error>> {
        let rows = load_math(path, self.fields.as_ref())?;
        select(rows, |r| r.level, self.levels.as_deref(), path, limit)
    }

    /// What the data selection is, for the first lines of a run.
    fn describe(&self, path: &std::path::Path, rows: usize) -> String {
        describe(path, rows, self.levels.as_deref())
    }
}

/// The whole configuration of `train-math`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MathRun {
    /// The policy.
    pub model: ModelSpec,
    /// The training set.
    pub data: MathData,
    /// Loop options (threads, entropy warning).
    pub run: RunOptions,
    /// The GRPO trainer.
    pub trainer: TrainConfig,
    /// The math-answer verifier's options.
    pub verifier: MathOptions,
    /// How the reward is composed around the verifier.
    #[serde(default)]
    pub reward: RewardSection,
    /// Held-out evaluation during training.
    #[serde(default)]
    pub eval: EvalSection,
    /// The environment of the episodes: `single-turn` (one response per prompt) or
    /// `code-interpreter` (the Python tool over several turns).
    #[serde(default)]
    pub env: EnvSection,
}

/// The `[eval]` section: held-out scores during training, written to each measured
/// step's `eval` in `metrics.jsonl` (`pass@1`, `pass@k`, `mean@k`) and to
/// `plots/eval.png`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalSection {
    /// Steps between measurements (and after the last step); 0: none.
    pub every: u64,
    /// Samples per problem (the `k` of pass@k and mean@k), at the rollout's temperature.
    pub samples: usize,
    /// The held-out file; absent: `data.eval`.
    pub file: Option<PathBuf>,
    /// Use only the first N rows; absent: `data.eval_limit`.
    pub limit: Option<usize>,
}

/// Where `[eval]` measures: a held-out file and how many of its rows.
struct HeldOut<'a> {
    file: &'a std::path::Path,
    limit: Option<usize>,
}

impl EvalSection {
    /// The held-out file and row limit this section measures on, when it is on and this
    /// is the rank that writes metrics: `file` else the task's `data.eval`, `limit` else
    /// `data.eval_limit`. `every` without a file and `samples = 0` are refused.
    fn target<'a>(
        &'a self,
        data_eval: Option<&'a std::path::Path>,
        data_eval_limit: Option<usize>,
        main: bool,
    ) -> Result<Option<HeldOut<'a>>, Box<dyn std::error::Error>> {
        let Some(file) = self.file.as_deref().or(data_eval) else {
            if self.every > 0 {
                return Err(
                    "eval.every is set but there is no held-out file (eval.file or data.eval)"
                        .into(),
                );
            }
            return Ok(None);
        };
        if self.every == 0 || !main {
            return Ok(None);
        }
        if self.samples == 0 {
            return Err("eval.samples must be at least 1".into());
        }
        Ok(Some(HeldOut {
            file,
            limit: self.limit.or(data_eval_limit),
        }))
    }

    /// The [`Evaluation`] of this section: every `every` steps, `score` with `samples`
    /// samples per problem at the rollout's settings, seeded by the run's seed and step.
    fn measure(
        &self,
        trainer: &TrainConfig,
        mut score: impl FnMut(&crate::model::Policy, &SamplingConfig) -> Result<EvalScores, String>
        + 'static,
    ) -> Evaluation {
        let (rollout, seed, k) = (trainer.rollout.clone(), trainer.seed, self.samples);
        Evaluation {
            every: self.every,
            probe: None,
            measure: Box::new(move |policy, step| {
                score(
                    policy,
                    &rollout.sampling(k, crate::seed::mix_seed(seed, step)),
                )
            }),
        }
    }
}

impl Default for EvalSection {
    fn default() -> Self {
        EvalSection {
            every: 0,
            samples: 1,
            file: None,
            limit: None,
        }
    }
}

impl MathRun {
    /// Loads the data and the policy, prints what will be trained (and, with `data.eval`,
    /// the starting policy's held-out pass@1), and builds the trainer.
    pub fn build(&self, launch: &Launch) -> BuildResult<MathReward> {
        check_precision(&self.model, &self.trainer)?;
        self.reward.validate(self.trainer.rollout.max_new_tokens)?;
        let rows = self.data.load(&self.data.train, self.data.limit)?;
        if rows.is_empty() {
            return Err(format!(
                "data.train: {}: no rows selected",
                self.data.train.display()
            )
            .into());
        }
        self.env.validate()?;
        let tools = self.tool_runner(launch)?;
        // Data-parallel, rank 0 alone measures the held-out scores.
        let main = launch.rank == 0;
        let evaluation = self.evaluation(main, tools.clone())?;
        let policy = self.model.load(launch)?;
        eprintln!(
            "train-math: policy {} ({}), GRPO on {}{}",
            self.model.path,
            policy.source.display(),
            self.data.describe(&self.data.train, rows.len()),
            match &tools {
                Some(_) => format!(
                    ", episodes with the Python tool (up to {} turns, {} calls)",
                    self.env.max_turns, self.env.max_tool_calls
                ),
                None => String::new(),
            }
        );
        if let Some(eval) = self.data.eval.as_ref().filter(|_| main) {
            let held_out = self.data.load(eval, self.data.eval_limit)?;
            let sampling = self.trainer.rollout.sampling(1, self.trainer.seed);
            let s = self.held_out_scores(&policy, &held_out, &sampling, tools.as_ref())?;
            print_start(
                "train-math",
                &sampling,
                &self.data.describe(eval, held_out.len()),
                &s,
            );
        }
        let answers: Vec<String> = rows.iter().map(|r| r.answer.clone()).collect();
        let interpreter = tools
            .as_ref()
            .map(|runner| self.interpreter(runner.clone(), &policy))
            .transpose()?;
        let data: Vec<Example<String>> = rows
            .into_iter()
            .map(|r| Example {
                prompt: match &interpreter {
                    Some(env) => env.opening(&r.prompt),
                    None => r.prompt,
                },
                task: r.answer,
            })
            .collect();
        let reward = self
            .reward
            .compose(MathVerifier::new(self.verifier), MATH_FORMAT)?;
        let shaping = self.reward.shaping(
            self.trainer.rollout.max_new_tokens,
            prompts_json(&data),
            data.iter()
                .map(|e| serde_json::json!({ "answer": e.task }))
                .collect(),
        )?;
        let trainer = Trainer::new(self.trainer.clone(), policy, reward, data)?;
        let mut trainer = with_ref_kl_reference(trainer, &self.model, launch)?;
        if let Some(shaping) = shaping {
            trainer = trainer.with_shaping(shaping);
        }
        if let Some(evaluation) = evaluation {
            trainer = trainer.with_evaluation(evaluation);
        }
        if let Some(env) = interpreter {
            if self.trainer.rollout.engine != crate::rollout::EngineKind::Local {
                return Err(ConfigError::Invalid {
                    path: "<config>".into(),
                    field: "trainer.rollout.engine",
                    why: "[env] episodes (several turns, tools) run on the local engine; a \
                          vLLM server samples single-turn rollouts"
                        .into(),
                }
                .into());
            }
            let engine = MultiTurnEngine::new(env, answers, self.env.episode_limits());
            trainer = trainer.with_engine(Box::new(engine));
        }
        Ok((trainer, self.run.clone()))
    }

    /// The sandbox that runs the Python tool's calls, when `env.kind` needs one: one
    /// worker process per core this rank is given, started from the current executable
    /// (whose `main` calls [`crate::verifiers::code::serve_if_worker`] first, as
    /// `train-math`'s does).
    fn tool_runner(
        &self,
        launch: &Launch,
    ) -> Result<Option<Arc<CodeVerifier>>, Box<dyn std::error::Error>> {
        if self.env.kind == EnvKind::SingleTurn {
            return Ok(None);
        }
        let config = CodeConfig {
            threads: launch.cores_per_rank(),
            limits: self.env.limits(),
            ..CodeConfig::default()
        };
        Ok(Some(Arc::new(CodeVerifier::with_worker_processes(
            config,
            WorkerCommand::current_exe()?,
        )?)))
    }

    /// The Python tool over `runner` in `env.tool_format` (resolved for `policy`), its
    /// final answers scored by the reward `[reward]` composes.
    fn interpreter(
        &self,
        runner: Arc<CodeVerifier>,
        policy: &crate::model::Policy,
    ) -> Result<CodeInterpreter<MathReward>, Box<dyn std::error::Error>> {
        let reward = self
            .reward
            .compose(MathVerifier::new(self.verifier), MATH_FORMAT)?;
        Ok(
            CodeInterpreter::new(reward, runner, self.env.limits(), self.env.max_output_chars)
                .with_format(self.env.tool_format.resolve(policy)),
        )
    }

    /// The held-out scores of `policy` on `rows`: single responses scored by the math
    /// verifier, or, with the Python tool (`tools`), whole episodes in the environment
    /// the run trains in.
    fn held_out_scores(
        &self,
        policy: &crate::model::Policy,
        rows: &[MathExample],
        sampling: &SamplingConfig,
        tools: Option<&Arc<CodeVerifier>>,
    ) -> Result<EvalScores, Box<dyn std::error::Error>> {
        let Some(runner) = tools else {
            return Ok(math_scores(policy, rows, sampling)?);
        };
        let env = self.interpreter(runner.clone(), policy)?;
        let prompts = prompt_ids(
            policy,
            rows.iter()
                .map(|r| env.opening(&r.prompt))
                .collect::<Vec<_>>()
                .iter(),
        )?;
        let answers = rows.iter().map(|r| r.answer.clone()).collect();
        let mut engine = MultiTurnEngine::new(env, answers, self.env.episode_limits());
        Ok(episode_scores(policy, &mut engine, &prompts, sampling)?)
    }

    /// The `[eval]` measure, on rank 0 (which alone writes metrics), when it is on and
    /// names a held-out file.
    fn evaluation(
        &self,
        main: bool,
        tools: Option<Arc<CodeVerifier>>,
    ) -> Result<Option<Evaluation>, Box<dyn std::error::Error>> {
        let target = self
            .eval
            .target(self.data.eval.as_deref(), self.data.eval_limit, main)?;
        let Some(HeldOut { file, limit }) = target else {
            return Ok(None);
        };
        let rows = self.data.load(file, limit)?;
        let run = self.clone();
        Ok(Some(self.eval.measure(
            &self.trainer,
            move |policy, sampling| {
                run.held_out_scores(policy, &rows, sampling, tools.as_ref())
                    .map_err(|e| e.to_string())
            },
        )))
    }
}

/// The `[data]` section of a code run.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeData {
    /// JSONL or verl Parquet file.
    pub train: PathBuf,
    /// Layout (default: detected from the first row).
    pub layout: Option<CodeLayout>,
    /// Use only the first N rows (after the level filter).
    pub limit: Option<usize>,
    /// Keep only rows whose `level` is one of these; applies to `eval` too. Empty or
    /// absent: every row.
    pub levels: Option<Vec<u32>>,
    /// A held-out file: before training, the starting policy's pass@1 on it (one sample
    /// per problem at the rollout temperature) is measured and printed.
    pub eval: Option<PathBuf>,
    /// Use only the first N rows of `eval`.
    pub eval_limit: Option<usize>,
    /// Run this many reference solutions through the verifier before training, as a
    /// check that the sandbox works (rank 0 alone, data-parallel).
    pub check_solutions: usize,
}

impl CodeData {
    /// Loads `path` with the configured layout, level filter and `limit`.
    fn load(
        &self,
        path: &std::path::Path,
        limit: Option<usize>,
    ) -> Result<Vec<CodeExample>, Box<dyn std::error::Error>> {
        let rows = load_code(path, self.layout)?;
        select(rows, |r| r.level, self.levels.as_deref(), path, limit)
    }

    /// What the data selection is, for the first lines of a run.
    fn describe(&self, path: &std::path::Path, rows: usize) -> String {
        describe(path, rows, self.levels.as_deref())
    }
}

/// The whole configuration of `train-code`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeRun {
    /// The policy.
    pub model: ModelSpec,
    /// The training set.
    pub data: CodeData,
    /// Loop options (threads, entropy warning).
    pub run: RunOptions,
    /// The GRPO trainer.
    pub trainer: TrainConfig,
    /// How the reward is composed around the verifier.
    #[serde(default)]
    pub reward: RewardSection,
    /// Held-out evaluation during training.
    #[serde(default)]
    pub eval: EvalSection,
}

impl CodeRun {
    /// Loads the data (checking the first reference solutions in the sandbox, with a
    /// warning for each that fails) and the policy, prints what will be trained (and,
    /// with `data.eval`, the starting policy's held-out pass@1), and builds the trainer.
    ///
    /// Programs run in one worker process per core this rank is given (all cores for a
    /// single process), started from the current executable:
    /// its `main` must call [`crate::verifiers::code::serve_if_worker`] first, as
    /// `train-code`'s does.
    pub fn build(&self, launch: &Launch) -> BuildResult<CodeReward> {
        check_precision(&self.model, &self.trainer)?;
        self.reward.validate(self.trainer.rollout.max_new_tokens)?;
        let train = &self.data.train;
        let rows = self.data.load(train, self.data.limit)?;
        if rows.is_empty() {
            return Err(format!("data.train: {}: no rows selected", train.display()).into());
        }
        // One worker per core this rank is given (ranks on one machine share it).
        let verifier = Arc::new(CodeVerifier::with_worker_processes(
            CodeConfig {
                threads: launch.cores_per_rank(),
                ..CodeConfig::default()
            },
            WorkerCommand::current_exe()?,
        )?);
        // Data-parallel, rank 0 alone checks solutions and measures the held-out scores.
        let main = launch.rank == 0;
        let evaluation = self.evaluation(main, &verifier)?;
        let described = self.data.describe(train, rows.len());
        let mut data = Vec::with_capacity(rows.len());
        let mut tasks_json = Vec::with_capacity(rows.len());
        let (mut accepted, mut checked) = (0, 0);
        for row in rows {
            let suite = row
                .test_suite()
                .map_err(|e| format!("{}: {e}", train.display()))?;
            if let Some(solution) = row
                .solution
                .as_deref()
                .filter(|_| main && checked < self.data.check_solutions)
            {
                let score = verifier.score(&suite, solution);
                checked += 1;
                accepted += score.correct as usize;
                if !score.correct {
                    eprintln!(
                        "warning: reference solution of `{}` fails: {}",
                        row.id, score.details
                    );
                }
            }
            tasks_json.push(serde_json::json!({ "tests": row.tests }));
            data.push(Example {
                prompt: row.prompt,
                task: suite,
            });
        }
        if checked > 0 {
            eprintln!("sandbox check: {accepted}/{checked} reference solutions accepted");
        }
        let shaping = self.reward.shaping(
            self.trainer.rollout.max_new_tokens,
            prompts_json(&data),
            tasks_json,
        )?;
        let policy = self.model.load(launch)?;
        eprintln!(
            "train-code: policy {} ({}), GRPO on {described}",
            self.model.path,
            policy.source.display(),
        );
        if let Some(eval) = self.data.eval.as_ref().filter(|_| main) {
            let held_out = self.data.load(eval, self.data.eval_limit)?;
            let sampling = self.trainer.rollout.sampling(1, self.trainer.seed);
            let s = code_scores(&policy, &held_out, &verifier, &sampling)?;
            print_start(
                "train-code",
                &sampling,
                &self.data.describe(eval, held_out.len()),
                &s,
            );
        }
        let reward = self.reward.compose(verifier, CODE_FORMAT)?;
        let trainer = Trainer::new(self.trainer.clone(), policy, reward, data)?;
        let mut trainer = with_ref_kl_reference(trainer, &self.model, launch)?;
        if let Some(shaping) = shaping {
            trainer = trainer.with_shaping(shaping);
        }
        if let Some(evaluation) = evaluation {
            trainer = trainer.with_evaluation(evaluation);
        }
        Ok((trainer, self.run.clone()))
    }

    /// The `[eval]` measure on rank 0, when it is on and names a held-out file; it
    /// shares the training reward's sandbox workers.
    fn evaluation(
        &self,
        main: bool,
        verifier: &Arc<CodeVerifier>,
    ) -> Result<Option<Evaluation>, Box<dyn std::error::Error>> {
        let target = self
            .eval
            .target(self.data.eval.as_deref(), self.data.eval_limit, main)?;
        let Some(HeldOut { file, limit }) = target else {
            return Ok(None);
        };
        let rows = self.data.load(file, limit)?;
        let verifier = verifier.clone();
        Ok(Some(self.eval.measure(
            &self.trainer,
            move |policy, sampling| {
                code_scores(policy, &rows, &verifier, sampling).map_err(|e| e.to_string())
            },
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::resolve;
    use std::path::Path;

    /// Every TOML in `configs/` resolves over its binary's defaults and passes the
    /// trainer's validation (the paper's recipes included: Clip-Cov's PPO clip 1.0).
    #[test]
    fn every_bundled_config_resolves_and_validates() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let trainer = match name.as_str() {
                // The demo's own schema, resolved by its tests.
                n if n.starts_with("demo") => continue,
                "train-code.toml" => {
                    let (cfg, _): (CodeRun, _) = resolve(CODE_DEFAULTS, Some(&path), &[])
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                    cfg.trainer
                }
                _ => {
                    let (cfg, _): (MathRun, _) = resolve(MATH_DEFAULTS, Some(&path), &[])
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                    cfg.trainer
                }
            };
            trainer
                .validate(&path)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            seen += 1;
        }
        assert_eq!(seen, 6, "train-math, train-code and the four paper recipes");
    }

    /// The paper's recipes load f32 weights and train bf16-mixed (f32 masters); a bf16
    /// model under f32 or bf16-mixed precision is refused, naming the fields.
    #[test]
    fn precision_is_decided_in_one_place() {
        for name in ["qwen2.5-7b-kl-cov.toml", "qwen2.5-32b-clip-cov.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("configs")
                .join(name);
            let (cfg, _): (MathRun, _) = resolve(MATH_DEFAULTS, Some(&path), &[]).unwrap();
            assert_eq!(cfg.trainer.precision, Precision::Bf16Mixed, "{name}");
            check_precision(&cfg.model, &cfg.trainer).unwrap();
        }
        let sets = ["model.dtype=\"bf16\"".to_string()];
        let (cfg, _): (MathRun, _) = resolve(MATH_DEFAULTS, None, &sets).unwrap();
        let err = check_precision(&cfg.model, &cfg.trainer)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("model.dtype") && err.contains("bf16-mixed"),
            "{err}"
        );
        let sets = [sets[0].clone(), "trainer.precision=\"bf16\"".to_string()];
        let (cfg, _): (MathRun, _) = resolve(MATH_DEFAULTS, None, &sets).unwrap();
        check_precision(&cfg.model, &cfg.trainer).unwrap();
    }

    /// The paper's Clip-Cov recipes set PPO clip 1.0 (the lower bound at ratio 0).
    #[test]
    fn clip_cov_recipes_use_ppo_clip_one() {
        for name in ["qwen2.5-7b-clip-cov.toml", "qwen2.5-32b-clip-cov.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("configs")
                .join(name);
            let (cfg, _): (MathRun, _) = resolve(MATH_DEFAULTS, Some(&path), &[]).unwrap();
            assert_eq!(cfg.trainer.loss.clip.eps_low, 1.0, "{name}");
            assert_eq!(cfg.trainer.loss.clip.eps_high, 1.0, "{name}");
        }
    }
}
