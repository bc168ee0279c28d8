//! The run folder's layout, spelled here only: `config.toml` (the resolved
//! configuration), `metrics.jsonl` (one line per step), `checkpoints/`, `plots/` and, with
//! `logging.tensorboard`, TensorBoard's `events.out.tfevents.*` files; with
//! `trainer.rollout.engine = "vllm"`, `weights/` (the versions pushed to the server) and
//! `vllm.log` (a launched server's output); and
//! the rule for starting in one ([`RunDir::check_start`]): a new run needs a folder that
//! holds no run, a resumed run the configuration it was started with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The configuration fields a resumed run may change: how far it trains, whether it
/// also writes TensorBoard events, and the address of its vLLM server (a restarted
/// server has a new one).
pub const RESUMABLE_FIELDS: &[&str] = &[
    "trainer.steps",
    "logging.tensorboard",
    "trainer.rollout.vllm.url",
];

/// Why a run cannot start in a folder.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    /// A new run into a folder that holds one.
    #[error(
        "{} already holds a run ({what}): pass --resume to continue it, or choose another --out",
        dir.display()
    )]
    Occupied {
        /// The run folder.
        dir: PathBuf,
        /// What was found there.
        what: String,
    },
    /// `--resume` where there is nothing to resume.
    #[error("--resume: {} holds no run to resume (no config.toml)", dir.display())]
    NothingToResume {
        /// The run folder.
        dir: PathBuf,
    },
    /// `--resume` with a configuration that differs from the stored one.
    #[error(
        "--resume: the configuration differs from the one {} was started with in {}; \
         resume with the stored settings (only {} may change) or start a new run",
        config.display(),
        fields.join(", "),
        RESUMABLE_FIELDS.join(", ")
    )]
    Mismatch {
        /// The stored `config.toml`.
        config: PathBuf,
        /// Each differing field as `key: stored -> now`.
        fields: Vec<String>,
    },
    /// The stored configuration cannot be read.
    #[error("{}: {message}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// `table` flattened to dotted keys (`trainer.optim.lr`); arrays and scalars are leaves.
fn flatten(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, toml::Value>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(t) => flatten(&path, t, out),
            other => {
                out.insert(path, other.clone());
            }
        }
    }
}

/// The fields whose values differ between `stored` and `now` (absent on one side
/// included), as `key: stored -> now`, without [`RESUMABLE_FIELDS`].
pub fn config_differences(stored: &toml::Table, now: &toml::Table) -> Vec<String> {
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    flatten("", stored, &mut a);
    flatten("", now, &mut b);
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let show = |v: Option<&toml::Value>| v.map_or("(unset)".to_string(), |v| v.to_string());
    keys.into_iter()
        .filter(|k| !RESUMABLE_FIELDS.contains(&k.as_str()) && a.get(*k) != b.get(*k))
        .map(|k| format!("{k}: {} -> {}", show(a.get(k)), show(b.get(k))))
        .collect()
}

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

    /// Whether a run with the resolved configuration `config` may start at `root`: a new
    /// run (`resume` false) needs a folder without `config.toml`, `metrics.jsonl` or
    /// checkpoints; a resumed one needs the stored `config.toml` to equal `config` but
    /// for [`RESUMABLE_FIELDS`]. Reads only, so every rank of a data-parallel run can
    /// ask before the first one writes.
    pub fn check_start(root: &Path, config: &toml::Table, resume: bool) -> Result<(), RunDirError> {
        let dir = Self::new(root);
        let stored = dir.config();
        if resume {
            if !stored.is_file() {
                return Err(RunDirError::NothingToResume {
                    dir: root.to_path_buf(),
                });
            }
            let unreadable = |message: String| RunDirError::Unreadable {
                path: stored.clone(),
                message,
            };
            let text = std::fs::read_to_string(&stored).map_err(|e| unreadable(e.to_string()))?;
            let table: toml::Table =
                toml::from_str(&text).map_err(|e| unreadable(e.to_string()))?;
            let fields = config_differences(&table, config);
            return if fields.is_empty() {
                Ok(())
            } else {
                Err(RunDirError::Mismatch {
                    config: stored,
                    fields,
                })
            };
        }
        let has_checkpoints = std::fs::read_dir(dir.checkpoints())
            .map(|mut entries| entries.next().is_some())
            .unwrap_or(false);
        let found: Vec<&str> = [
            (stored.is_file(), "config.toml"),
            (dir.metrics().is_file(), "metrics.jsonl"),
            (has_checkpoints, "checkpoints"),
        ]
        .into_iter()
        .filter_map(|(present, name)| present.then_some(name))
        .collect();
        if found.is_empty() {
            Ok(())
        } else {
            Err(RunDirError::Occupied {
                dir: root.to_path_buf(),
                what: found.join(", "),
            })
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

    /// `weights/`: the policy versions written for an inference server to load.
    pub fn weights(&self) -> PathBuf {
        self.root.join("weights")
    }

    /// `vllm.log`: the output of a vLLM server the run launched.
    pub fn vllm_log(&self) -> PathBuf {
        self.root.join("vllm.log")
    }

    /// The plot folder.
    pub fn plots(&self) -> PathBuf {
        self.root.join("plots")
    }
}
