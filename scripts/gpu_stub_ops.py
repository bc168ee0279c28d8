"""Stubs the wrappers of tch's generated C++ file whose ops an older libtorch lacks.

python scripts/gpu_stub_ops.py TORCH_INCLUDE torch_api_generated.cpp

Compiles the file against TORCH_INCLUDE, collects the `atg_*` functions the compiler
rejects, and replaces each body with one that raises "not in this libtorch" (tch turns
it into a Rust error), repeating until the file compiles. Used by scripts/gpu_check.sh
to link the GPU check against the GPU machine's libtorch.
"""

import os
import re
import subprocess
import sys


def failing_functions(include: str, path: str) -> set[str]:
    cmd = ["c++", "-std=c++17", "-fsyntax-only", "-w", "-D_GLIBCXX_USE_CXX11_ABI=1",
           "-I", include, "-I", f"{include}/torch/csrc/api/include", path]
    env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env).stderr
    return set(re.findall(r"In function '[^']*?\b(atg_\w+)\(", out))


def stub(text: str, name: str) -> str:
    start = re.search(rf"^\w[^\n]*\b{name}\(", text, re.M)
    if not start:
        raise SystemExit(f"{name}: definition not found")
    body = text.index("{", start.end())
    end = text.index("\n}\n", body)
    message = f'throw std::runtime_error("{name}: not in this libtorch");'
    return text[: body + 1] + f"\n  PROTECT({message})" + text[end:]


def main() -> None:
    include, path = sys.argv[1:]
    for _ in range(5):
        names = failing_functions(include, path)
        if not names:
            return
        text = open(path).read()
        for name in sorted(names):
            text = stub(text, name)
        open(path, "w").write(text)
        print(f"stubbed {len(names)} wrappers: {', '.join(sorted(names))}")
    raise SystemExit("the file still does not compile")


if __name__ == "__main__":
    main()
