//! The `cove` command-line tool.

use clap::{Parser, Subcommand};
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
