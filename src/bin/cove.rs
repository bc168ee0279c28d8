//! The `cove` command-line tool.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

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
    Fit(cove::law::FitArgs),
    /// Regenerate the synthetic math set (datasets/math/) from its seed.
    SynthMath(cove::data::synth::SynthArgs),
    /// The embedded-default demo: tiny policy, warm start, GRPO vs Clip-Cov vs KL-Cov,
    /// report folder with plots and the fitted entropy-performance law.
    Demo(cove::demo::DemoArgs),
    /// Math accuracy of a policy on a dataset (sampling + the math verifier).
    Eval(cove::app::training::EvalArgs),
    /// Score responses offline with a verifier.
    #[command(subcommand)]
    Verify(Verify),
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

fn main() -> ExitCode {
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
        Command::Fit(args) => report(cove::law::run_fit(&args)),
        Command::SynthMath(args) => report(cove::data::synth::run(&args)),
        Command::Demo(args) => report(cove::demo::run_cli(&args)),
        Command::Eval(args) => report(cove::app::training::run_eval(&args)),
        Command::Verify(Verify::Math { input, output }) => verify_math(&input, output.as_deref()),
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
