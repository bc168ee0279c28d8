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
