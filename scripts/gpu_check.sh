#!/usr/bin/env bash
# The GPU check (examples/gpu_check.rs) for a CUDA machine that has PyTorch but no
# registry access and cannot be sent more than a few tens of MB.
#
#   bash scripts/gpu_check.sh build   # here: gathers .gpu/ (about 40 MB)
#   bash scripts/gpu_check.sh run     # there, in the checkout's root, with .gpu/ beside it
#
# build: downloads the PyPI wheel of the GPU machine's torch (TORCH_VERSION, default
# 2.11.0, the CUDA 13.0 build) into .cache/cove/gpu, links the example against its
# libtorch in target/gpu (release), and writes .gpu/gpu_check (stripped) and
# .gpu/smollm2-shape (the converted SmolLM2 folder without its 538 MB of weights; the
# check writes seeded random weights of that shape there).
# run: points the loader at the machine's own torch (same version), runs the check and
# copies its log and the train-math metrics to $OUT (default .gpu/out).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TORCH_VERSION="${TORCH_VERSION:-2.11.0}"

case "${1:-}" in
build)
    cache=.cache/cove/gpu
    mkdir -p "$cache"
    wheel="$cache/torch-$TORCH_VERSION-cp311-cp311-manylinux_2_28_x86_64.whl"
    if [ ! -f "$wheel" ]; then
        .venv/bin/python -m pip download --no-deps --only-binary=:all: --python-version 3.11 \
            --platform manylinux_2_28_x86_64 -d "$cache" "torch==$TORCH_VERSION"
    fi
    libtorch="$cache/torch-$TORCH_VERSION"
    if [ ! -f "$libtorch/torch/lib/libtorch_cuda.so" ]; then
        rm -rf "$libtorch"
        .venv/bin/python - "$wheel" "$libtorch" <<'EOF'
import sys, zipfile
wheel, out = sys.argv[1:]
z = zipfile.ZipFile(wheel)
z.extractall(out, [n for n in z.namelist()
                   if n.startswith(("torch/lib/", "torch/include/", "torch/share/"))])
EOF
    fi
    # tch 0.26's generated C++ wrappers name a few ops that libtorch 2.11 lacks (the
    # philox, lanczos and MPS attention ops, none of which Cove calls): a copy of
    # torch-sys whose wrappers for ops the compiler rejects raise an error instead.
    sys_src="$(dirname "$(cargo metadata --format-version 1 | .venv/bin/python -c '
import json, sys
m = json.load(sys.stdin)
print(next(p["manifest_path"] for p in m["packages"] if p["name"] == "torch-sys"))')")"
    sys_copy="$cache/torch-sys-for-$TORCH_VERSION"
    if [ ! -f "$sys_copy/.stubbed" ]; then
        rm -rf "$sys_copy"
        cp -r "$sys_src" "$sys_copy"
        .venv/bin/python scripts/gpu_stub_ops.py "$libtorch/torch/include" \
            "$sys_copy/libtch/torch_api_generated.cpp"
        touch "$sys_copy/.stubbed"
    fi
    cp Cargo.lock "$cache/Cargo.lock.main"
    trap 'cp "$cache/Cargo.lock.main" Cargo.lock' EXIT
    LIBTORCH="$PWD/$libtorch/torch" LIBTORCH_BYPASS_VERSION_CHECK=1 CARGO_TARGET_DIR="$PWD/target/gpu" \
        cargo build --release --example gpu_check \
        --config "patch.crates-io.torch-sys.path=\"$PWD/$sys_copy\""
    rm -rf .gpu
    mkdir -p .gpu/smollm2-shape
    strip -o .gpu/gpu_check target/gpu/release/examples/gpu_check
    model=.cache/cove/models/smollm2-135m-instruct
    for f in "$model"/*; do
        [ "$(basename "$f")" = model.safetensors ] || cp "$f" .gpu/smollm2-shape/
    done
    du -sh .gpu
    ;;
run)
    out="${OUT:-.gpu/out}"
    mkdir -p "$out"
    torch_lib="$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
    export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu_check.log"
    python3 -c 'import torch; print("torch", torch.__version__)' | tee -a "$out/gpu_check.log"
    run=/tmp/cove-gpu-check
    rm -rf "$run"
    status=0
    .gpu/gpu_check "$run" .gpu/smollm2-shape 2>&1 | tee -a "$out/gpu_check.log" || status=$?
    cp "$run/train-math/metrics.jsonl" "$out/train-math-metrics.jsonl" 2>/dev/null || true
    exit "$status"
    ;;
*)
    echo "usage: bash scripts/gpu_check.sh build|run" >&2
    exit 2
    ;;
esac
