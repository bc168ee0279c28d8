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
    }
}
