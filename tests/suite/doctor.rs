//! `cove doctor` reports a healthy set-up, and fails with the fix when the sandbox
//! runtime is missing or corrupted.

use std::process::Command;

fn doctor(runtime_dir: Option<&std::path::Path>) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cove"));
    cmd.arg("doctor").env_remove("LD_LIBRARY_PATH");
    if let Some(dir) = runtime_dir {
        cmd.env(cove::verifiers::runtime::RUNTIME_DIR_ENV, dir);
    }
    let out = cmd.output().expect("cove binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn healthy_setup_passes_and_names_torch_version() {
    let (ok, text) = doctor(None);
    assert!(ok, "{text}");
    assert!(text.contains("torch 2.13.0"), "{text}");
    assert!(text.contains("sha256 ok"), "{text}");
    assert!(text.contains("cuda"), "{text}");
}

#[test]
fn missing_runtime_fails_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = doctor(Some(dir.path()));
    assert!(!ok, "{text}");
    assert!(text.contains("FAIL"), "{text}");
    assert!(text.contains("scripts/setup.sh"), "{text}");
}

#[test]
fn corrupted_runtime_fails_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("python-3.12.0.wasm"), b"not a wasm file").unwrap();
    let (ok, text) = doctor(Some(dir.path()));
    assert!(!ok, "{text}");
    assert!(text.contains("failed its SHA-256 check"), "{text}");
}
