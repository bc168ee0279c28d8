//! The run folder's layout, spelled here only: `config.toml` (the resolved
//! configuration), `metrics.jsonl` (one line per step), `checkpoints/` and `plots/`.

use std::path::{Path, PathBuf};

/// A run's folder.
#[derive(Debug, Clone)]
pub struct RunDir {
    /// The folder.
    pub root: PathBuf,
}

impl RunDir {
    /// The run folder at `root` (nothing is created).
    pub fn new(root: &Path) -> Self {
        RunDir {
            root: root.to_path_buf(),
        }
    }

    /// Creates (or reuses) the folder and its sub-folders and writes the resolved
    /// configuration to `config.toml`.
    pub fn create(root: &Path, config: &toml::Table) -> std::io::Result<Self> {
        let dir = Self::new(root);
        std::fs::create_dir_all(dir.checkpoints())?;
        std::fs::create_dir_all(dir.plots())?;
        let text = toml::to_string_pretty(config).map_err(std::io::Error::other)?;
        std::fs::write(dir.config(), text)?;
        Ok(dir)
    }

    /// The resolved configuration the run was started with.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// The metrics file (one JSON object per step).
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }

    /// The checkpoint folder.
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// The plot folder.
    pub fn plots(&self) -> PathBuf {
        self.root.join("plots")
    }
}
