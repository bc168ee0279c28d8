//! `cove doctor`: a health check of the pieces Cove needs at run time.
//!
//! It reports the linked libtorch (version and folder), whether CUDA is usable and, if
//! not, the likely reason, the intra-op thread count, and the sandbox runtime with its
//! hash status. Every failed required check carries the command that fixes it.

use cove_verifiers::runtime::{self, PYTHON_312_PREVIEW1};
use std::fmt;
use std::path::{Path, PathBuf};

/// The folder of the libtorch shared libraries this build links (baked in by build.rs).
pub const LIBTORCH_LIB_DIR: &str = env!("COVE_LIBTORCH_LIB");

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// What was found.
    pub detail: String,
    /// Whether Cove can run without this check passing.
    pub required: bool,
    /// Whether the check passed.
    pub ok: bool,
}

/// The whole report.
#[derive(Debug, Clone)]
pub struct Report {
    /// The checks, in display order.
    pub checks: Vec<Check>,
}

impl Report {
    /// True when every required check passed.
    pub fn healthy(&self) -> bool {
        self.checks.iter().all(|c| c.ok || !c.required)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for check in &self.checks {
            let mark = match (check.ok, check.required) {
                (true, _) => "ok  ",
                (false, true) => "FAIL",
                (false, false) => "note",
            };
            writeln!(f, "[{mark}] {:<16} {}", check.name, check.detail)?;
        }
        Ok(())
    }
}

/// The libtorch version, read from the `version.py` of a PyTorch install or the
/// `build-version` file of a standalone libtorch next to the `lib/` folder.
pub fn libtorch_version(lib_dir: &Path) -> Option<String> {
    let root = lib_dir.parent()?;
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        return text.lines().find_map(|line| {
            let value = line.strip_prefix("__version__")?.split('=').nth(1)?;
            Some(value.trim().trim_matches(['\'', '"']).to_string())
        });
    }
    std::fs::read_to_string(root.join("build-version"))
        .ok()
        .map(|v| v.trim().to_string())
}

/// Why CUDA is not available, in the most likely order of causes.
fn cuda_unavailable_reason(lib_dir: &Path) -> String {
    if !lib_dir.join("libtorch_cuda.so").exists() {
        return format!(
            "this libtorch ({}) is a CPU-only build; install a CUDA build of torch",
            lib_dir.display()
        );
    }
    if !Path::new("/dev/nvidiactl").exists() && !Path::new("/proc/driver/nvidia").exists() {
        return "no NVIDIA driver or GPU on this machine (expected on CPU-only hosts)".into();
    }
    "libtorch_cuda is present and a driver exists, but CUDA did not initialise; \
     check that the driver supports this torch's CUDA version (nvidia-smi)"
        .into()
}

/// Runs every check. `runtime_dir` is where the sandbox runtimes are looked up.
pub fn run(runtime_dir: &Path) -> Report {
    let lib_dir = PathBuf::from(LIBTORCH_LIB_DIR);
    let mut checks = Vec::new();

    let version = libtorch_version(&lib_dir);
    checks.push(Check {
        name: "libtorch",
        detail: format!(
            "torch {} at {}",
            version.as_deref().unwrap_or("(version unknown)"),
            lib_dir.display()
        ),
        required: true,
        ok: lib_dir.join("libtorch_cpu.so").exists(),
    });

    let cuda = tch::Cuda::is_available();
    checks.push(Check {
        name: "cuda",
        detail: if cuda {
            format!("available, {} device(s)", tch::Cuda::device_count())
        } else {
            format!("not available: {}", cuda_unavailable_reason(&lib_dir))
        },
        required: false,
        ok: cuda,
    });

    checks.push(Check {
        name: "threads",
        detail: format!(
            "{} intra-op, {} inter-op",
            tch::get_num_threads(),
            tch::get_num_interop_threads()
        ),
        required: false,
        ok: true,
    });

    use crate::reproducible::{CpuMath, strict_cpu_math};
    let (detail, ok) = match strict_cpu_math() {
        CpuMath::Strict => (
            "MKL strict mode: the same bits at any thread count".into(),
            true,
        ),
        CpuMath::NoMkl => ("no MKL in this libtorch (nothing to switch)".into(), true),
        CpuMath::TooLate(code) => (
            format!(
                "MKL was used before the switch (code {code}): results may follow the thread count"
            ),
            false,
        ),
    };
    checks.push(Check {
        name: "cpu math",
        detail,
        required: false,
        ok,
    });

    let path = runtime_dir.join(PYTHON_312_PREVIEW1.file_name);
    let runtime_check = runtime::verify(&path, &PYTHON_312_PREVIEW1);
    checks.push(Check {
        name: "sandbox runtime",
        detail: match &runtime_check {
            Ok(p) => format!("{} (sha256 ok)", p.display()),
            Err(e) => e.to_string(),
        },
        required: true,
        ok: runtime_check.is_ok(),
    });

    Report { checks }
}
