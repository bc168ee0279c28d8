"""The machine a benchmark script ran on, for the line each script prints with its table."""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (else what `platform` knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe() -> str:
    """`N cores, CPU model, Python X.Y.Z`."""
    return f"{os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}"
