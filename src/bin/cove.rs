//! The `cove` command-line tool.

use clap::{Parser, Subcommand};
use cove::verifiers::code::{
    self, CodeConfig, CodeVerifier, Extract, Limits, RuntimeKind, Scoring,
};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Cove: reinforcement learning with verifiable rewards.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check libtorch, CUDA, threads and the sandbox runtime; exit non-zero if a
    /// required piece is missing.
    Doctor,
    /// Fit the entropy-performance law R = -a*exp(H) + b to a metrics file.
    Fit(cove::cli::commands::FitArgs),
    /// Regenerate the synthetic math set (datasets/math/) from its seed.
    SynthMath(cove::cli::commands::SynthArgs),
    /// The embedded-default demo: SmolLM2-135M-Instruct's four arms (GRPO with clip 0.2
    /// and 1, Clip-Cov, KL-Cov) from the same start, a report folder with summary.json,
    /// plots and the fitted entropy-performance law (`--model tiny`: the fast toy).
    Demo(cove::cli::demo::DemoArgs),
    /// Scores of a policy on a math or code dataset (sampling + the task's verifier):
    /// pass@1, pass@k and mean@k over `--samples` samples per problem, per level too.
    Eval(cove::cli::eval::EvalArgs),
    /// Sample episodes of an environment (the Python tool: `--env code-interpreter`) on
    /// math problems and write one JSON line per episode: `messages`, `tool_calls`,
    /// `reward`, `token_ids`, `loss_mask`.
    Rollout(cove::cli::rollout::RolloutArgs),
    /// Serve the verifiers over HTTP: SandboxFusion's `POST /run_code` (python), `POST
    /// /verify/math`, `POST /verify/code` and `GET /health`. Runs until Ctrl-C.
    Serve(cove_serve::ServeArgs),
    /// Score responses offline with a verifier.
    #[command(subcommand)]
    Verify(Verify),
    /// Compute Cove's policy loss on given tensors and print, as JSON, the per-token
    /// loss, its gradient, the selected tokens and the metrics (to compare with another
    /// implementation on the same inputs).
    Loss {
        /// `.json` ({"logp", "old_logp", "advantages", "mask"}: [B][T] arrays) or
        /// `.safetensors` with tensors of those names.
        input: PathBuf,
        /// TOML file with the loss settings (the `[loss]` table's fields: clip, agg,
        /// control, scope); defaults when absent.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Seed of Clip-Cov's random choice.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Merge a LoRA checkpoint's adapter into its base model and write a Hugging Face
    /// folder (config.json, model.safetensors, tokenizer files).
    MergeLora {
        /// The checkpoint folder (with adapter_config.json and adapter_model.safetensors).
        checkpoint: PathBuf,
        /// Output folder (replaced atomically).
        out: PathBuf,
        /// Base model (a named model or a Hugging Face folder) instead of the
        /// checkpoint's `base_model_name_or_path`.
        #[arg(long)]
        base: Option<String>,
    },
    /// Write a fully fine-tuned checkpoint as a Hugging Face folder that transformers
    /// loads (config.json, model.safetensors in f32, tokenizer files); LoRA checkpoints
    /// go through `merge-lora`.
    Export {
        /// The checkpoint folder (`runs/NAME/checkpoints/step-N`).
        checkpoint: PathBuf,
        /// Output folder (replaced atomically).
        out: PathBuf,
        /// Base model (a named model, `tiny` or a Hugging Face folder) instead of the
        /// one the run's config.toml names.
        #[arg(long)]
        base: Option<String>,
    },
    /// Write the tiny built-in policy (random weights from `--seed`) as a Hugging Face
    /// folder, loadable by transformers and by `cove::model::Policy::from_hf_dir`.
    ExportTiny {
        /// Output folder.
        out: std::path::PathBuf,
        /// Seed of the random initialisation.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

#[derive(Subcommand)]
enum Verify {
    /// Check math answers: each JSONL line has `response` and `gold` (other fields kept);
    /// writes one line per input with `correct`, `extracted`, `gold_normalized`, `reason`.
    Math {
        /// Input JSONL file.
        #[arg(long)]
        input: PathBuf,
        /// Output JSONL file (default: standard output).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Run Python responses against their tests in the WASM sandbox. Each input line is
    /// `{"response": ..., "tests": {...}}`; each output line has `score`, `passed`,
    /// `total` and `verdicts` (or `error` for a bad line, which is also reported on
    /// stderr; the other lines still run and the exit status is 1).
    Code(CodeArgs),
}

fn verify_math(input: &std::path::Path, output: Option<&std::path::Path>) -> ExitCode {
    use cove::verifiers::math::{MathOptions, jsonl::verify_jsonl};
    use std::io::{BufReader, BufWriter, Write};
    let reader = match std::fs::File::open(input) {
        Ok(f) => BufReader::new(f),
        Err(e) => {
            eprintln!("cove verify math: cannot open {}: {e}", input.display());
            return ExitCode::FAILURE;
        }
    };
    let writer: Box<dyn Write> = match output {
        Some(p) => match std::fs::File::create(p) {
            Ok(f) => Box::new(BufWriter::new(f)),
            Err(e) => {
                eprintln!("cove verify math: cannot create {}: {e}", p.display());
                return ExitCode::FAILURE;
            }
        },
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    match verify_jsonl(reader, writer, &MathOptions::default()) {
        Ok(s) => {
            eprintln!(
                "cove verify math: {} verified, {} correct, {} malformed line(s) in {}",
                s.verified,
                s.correct,
                s.malformed,
                input.display()
            );
            if s.malformed > 0 {
                eprintln!(
                    "cove verify math: malformed lines are reported as {{\"line\", \"error\"}} records"
                );
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("cove verify math: {}: {e}", input.display());
            ExitCode::FAILURE
        }
    }
}

#[derive(clap::Args)]
struct CodeArgs {
    /// JSONL file of responses and tests.
    #[arg(long)]
    input: PathBuf,
    /// Where to write the results (default: stdout).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Python runtime.
    #[arg(long, default_value = "component", value_parser = ["component", "preview1"])]
    runtime: String,
    /// How case verdicts become the score.
    #[arg(long, default_value = "all-or-nothing", value_parser = ["all-or-nothing", "pass-fraction"])]
    scoring: String,
    /// Stop each suite at its first failing case.
    #[arg(long)]
    stop_at_first_failure: bool,
    /// Take the whole response as the program instead of its last ```python block.
    #[arg(long)]
    raw: bool,
    /// Wall-clock limit per execution (one test case), in seconds.
    #[arg(long, default_value_t = 4.0)]
    time_limit: f64,
    /// Memory cap per execution, in MiB.
    #[arg(long, default_value_t = 512)]
    memory_mib: usize,
    /// Worker processes, or threads with --in-process (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Run programs on threads of this process instead of worker processes (threads of
    /// one process barely scale across cores; processes do).
    #[arg(long)]
    in_process: bool,
}

fn verify_code(args: CodeArgs) -> Result<ExitCode, String> {
    let config = CodeConfig {
        runtime: if args.runtime == "preview1" {
            RuntimeKind::Preview1
        } else {
            RuntimeKind::Component
        },
        limits: Limits {
            time: Duration::try_from_secs_f64(args.time_limit)
                .map_err(|e| format!("--time-limit: {e}"))?,
            memory_bytes: args.memory_mib << 20,
            ..Limits::default()
        },
        scoring: if args.scoring == "pass-fraction" {
            Scoring::PassFraction
        } else {
            Scoring::AllOrNothing
        },
        stop_at_first_failure: args.stop_at_first_failure,
        extract: if args.raw {
            Extract::Raw
        } else {
            Extract::LastPythonBlock
        },
        threads: args.threads,
    };
    let verifier = if args.in_process {
        CodeVerifier::new(config)
    } else {
        code::WorkerCommand::current_exe()
            .and_then(|command| CodeVerifier::with_worker_processes(config, command))
    }
    .map_err(|e| e.to_string())?;
    let summary = match &args.output {
        Some(path) => {
            let file =
                std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
            code::jsonl::verify_jsonl(&verifier, &args.input, &mut std::io::BufWriter::new(file))
        }
        None => code::jsonl::verify_jsonl(&verifier, &args.input, &mut std::io::stdout().lock()),
    }
    .map_err(|e| e.to_string())?;
    for err in &summary.errors {
        eprintln!("error: {}", err.message);
    }
    eprintln!(
        "cove verify code: {} verified, {} fully passed, {} bad lines",
        summary.verified,
        summary.all_passed,
        summary.errors.len()
    );
    Ok(if summary.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn loss_command(
    input: &std::path::Path,
    config: Option<&std::path::Path>,
    seed: u64,
) -> Result<String, String> {
    let cfg = match config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            toml::from_str::<cove::loss::LossConfig>(&text)
                .map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => cove::loss::LossConfig::default(),
    };
    let inputs = cove::loss::compare::LossInputs::read(input).map_err(|e| e.to_string())?;
    let report =
        cove::loss::compare::compute_loss(&inputs, &cfg, seed).map_err(|e| e.to_string())?;
    serde_json::to_string_pretty(&report).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    code::serve_if_worker();
    // Before any tensor: CPU products give the same bits at any thread count.
    cove::reproducible::strict_cpu_math();
    let cli = Cli::parse();
    match cli.command {
        Command::Doctor => {
            let report = cove::doctor::run(&cove::verifiers::runtime::runtime_dir());
            print!("{report}");
            if report.healthy() {
                ExitCode::SUCCESS
            } else {
                eprintln!("cove doctor: a required check failed (see FAIL above)");
                ExitCode::FAILURE
            }
        }
        Command::Fit(args) => report(cove::cli::commands::run_fit(&args)),
        Command::SynthMath(args) => report(cove::cli::commands::run_synth(&args)),
        Command::Demo(args) => report(cove::cli::demo::run_cli(&args)),
        Command::Eval(args) => report(cove::cli::eval::run_eval(&args)),
        Command::Rollout(args) => report(cove::cli::rollout::run_rollout(&args)),
        Command::Serve(args) => match cove_serve::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cove serve: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Verify(Verify::Math { input, output }) => verify_math(&input, output.as_deref()),
        Command::Verify(Verify::Code(args)) => verify_code(args).unwrap_or_else(|msg| {
            eprintln!("cove verify code: {msg}");
            ExitCode::FAILURE
        }),
        Command::Loss {
            input,
            config,
            seed,
        } => match loss_command(&input, config.as_deref(), seed) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cove loss: {e}");
                ExitCode::FAILURE
            }
        },
        Command::MergeLora {
            checkpoint,
            out,
            base,
        } => report(
            cove::model::lora::merge_checkpoint(&checkpoint, base.as_deref(), &out)
                .map_err(Into::into),
        ),
        Command::Export {
            checkpoint,
            out,
            base,
        } => report(
            cove::model::export::export_checkpoint(&checkpoint, base.as_deref(), &out)
                .map_err(Into::into),
        ),
        Command::ExportTiny { out, seed } => {
            let saved = cove::model::tiny::policy(&Default::default(), seed, tch::Device::Cpu)
                .and_then(|p| p.save_pretrained(&out));
            match saved {
                Ok(()) => {
                    println!("wrote {}", out.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("cove export-tiny: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Prints a subcommand's output, or its error on stderr with a failing exit code.
fn report(result: Result<String, Box<dyn std::error::Error>>) -> ExitCode {
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
