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
        Command::ExportTiny { out, seed } => {
            let saved = cove::tiny::policy(&Default::default(), seed, tch::Device::Cpu)
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
