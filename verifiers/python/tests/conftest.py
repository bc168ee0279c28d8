"""Shared fixtures of the cove_verifiers tests.

The tests import the installed package (scripts/test_python.sh installs the wheel into a
fresh virtual environment). When that package has no bundled sandbox component and
COVE_RUNTIME_DIR is unset, the repository's `.cache/cove/runtime` (placed by
scripts/setup.sh) is used, so the code tests run either way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
CORPUS = REPO / "verifiers" / "testdata" / "math" / "corpus.jsonl"
REPO_RUNTIME = REPO / ".cache" / "cove" / "runtime"

import cove_verifiers  # noqa: E402
from cove_verifiers import _runtime  # noqa: E402

if "COVE_RUNTIME_DIR" not in os.environ and _runtime._kind_in(_runtime.BUNDLED_DIR) != "component":
    if (REPO_RUNTIME / _runtime.COMPONENT_FILE).is_file():
        os.environ["COVE_RUNTIME_DIR"] = str(REPO_RUNTIME)


@pytest.fixture(scope="session")
def cove_bin() -> Path:
    """The `cove` CLI: $COVE_BIN, else target/debug/cove; skips when absent."""
    env = os.environ.get("COVE_BIN")
    path = Path(env) if env else REPO / "target" / "debug" / "cove"
    if not path.is_file() and not env and shutil.which("cove"):
        path = Path(shutil.which("cove"))
    if not path.is_file():
        pytest.skip(f"the cove CLI is not built ({path}); run `cargo build` or set COVE_BIN")
    return path


@pytest.fixture(scope="session")
def sandbox():
    """The loaded sandbox's info (loads it once for the session)."""
    return cove_verifiers.code.load_sandbox()


def run_cli(cove_bin: Path, *args: str) -> str:
    """Runs the CLI and returns its stdout (fails the test on a non-zero exit)."""
    res = subprocess.run([str(cove_bin), *args], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    return res.stdout
