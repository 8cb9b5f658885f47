"""What CPU this is: name and feature flags from ``/proc/cpuinfo`` (export and bench share it)."""

from __future__ import annotations

import platform
import re
from pathlib import Path


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def cpu_flags() -> set[str]:
    """The CPU feature flags (empty where there is no ``/proc/cpuinfo``)."""
    m = re.search(r"^flags\s*:\s*(.*)$", _cpuinfo(), re.MULTILINE)
    return set(m.group(1).split()) if m else set()


def cpu_has_vnni(flags: set[str] | None = None) -> bool:
    """AVX-512 VNNI, AVX-VNNI or AMX: int8 dot products without ``vpmaddubsw`` saturation."""
    flags = cpu_flags() if flags is None else flags
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


def cpu_name() -> str:
    m = re.search(r"^model name\s*:\s*(.*)$", _cpuinfo(), re.MULTILINE)
    if m:
        return m.group(1).strip()
    return platform.processor() or platform.machine()
