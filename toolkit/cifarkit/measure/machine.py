"""The machine a benchmark ran on, recorded next to every figure.

CPU model, vendor, cores, the SIMD/int8 flags that decide onnxruntime's kernels (AVX2,
AVX-512, VNNI, AMX, F16C), memory, the GPU(s) ``nvidia-smi`` reports, library versions
(read from package metadata: nothing heavy is imported), the command line and a UTC
timestamp. Nothing here fails: a field that cannot be read is ``None``.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

# Flags worth knowing for CNN inference (present/absent each recorded).
CPU_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
    "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16",
)
LIBRARIES = (
    "cifarkit", "numpy", "onnxruntime-gpu", "onnxruntime", "onnxruntime-openvino", "onnx",
    "pillow", "matplotlib", "tensorflow", "keras", "tf2onnx",
)


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def read_cpuinfo() -> str:
    """``/proc/cpuinfo`` ("" where there is none)."""
    return _read("/proc/cpuinfo")


def cpuinfo_field(text: str, name: str) -> str | None:
    """The first ``name : value`` of ``/proc/cpuinfo``'s ``text``."""
    m = re.search(rf"^{re.escape(name)}\s*:\s*(.*)$", text, re.MULTILINE)
    return m.group(1).strip() if m else None


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU feature flags of ``cpuinfo`` (default: this machine's; empty where there is no
    ``/proc/cpuinfo``)."""
    return set((cpuinfo_field(read_cpuinfo() if cpuinfo is None else cpuinfo, "flags")
                or "").split())


def cpu_has_vnni(flags: set[str] | None = None) -> bool:
    """AVX-512 VNNI, AVX-VNNI or AMX: int8 dot products without ``vpmaddubsw`` saturation."""
    flags = cpu_flags() if flags is None else flags
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


def cpu_name() -> str:
    return cpuinfo_field(read_cpuinfo(), "model name") or platform.processor() or \
        platform.machine()


def physical_cores() -> int:
    """Physical CPU cores this process may run on (hyper-threads counted once).

    From Linux's CPU topology for the CPUs in our affinity mask; ``os.cpu_count()`` elsewhere.
    """
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
    cores = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topo / "physical_package_id").read_text().strip()
            core = (topo / "core_id").read_text().strip()
        except OSError:
            return max(1, len(cpus))
        cores.add((package, core))
    return max(1, len(cores))


def cpu_info() -> dict[str, Any]:
    text = read_cpuinfo()
    flags = cpu_flags(text)
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count()
    info: dict[str, Any] = {
        "model": cpu_name(),
        "vendor": cpuinfo_field(text, "vendor_id"),
        "family": cpuinfo_field(text, "cpu family"),
        "model_number": cpuinfo_field(text, "model"),
        "physical_cores": physical_cores(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": affinity,
        "mhz": float(m) if (m := cpuinfo_field(text, "cpu MHz")) and _is_float(m) else None,
        "flags": {f: f in flags for f in CPU_FLAGS} if flags else {},
        "vnni": cpu_has_vnni(flags),
        "hypervisor": "hypervisor" in flags,
    }
    l2 = _read("/sys/devices/system/cpu/cpu0/cache/index2/size").strip()
    l3 = _read("/sys/devices/system/cpu/cpu0/cache/index3/size").strip()
    info["l2_cache"] = l2 or None
    info["l3_cache"] = l3 or None
    return info


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def memory_gib() -> float | None:
    m = re.search(r"^MemTotal:\s*(\d+)\s*kB", _read("/proc/meminfo"), re.MULTILINE)
    return round(int(m.group(1)) / 2**20, 1) if m else None


def gpu_info() -> list[dict[str, Any]]:
    """NVIDIA GPUs from ``nvidia-smi`` (empty without one)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,driver_version,memory.total,compute_cap",
             "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3:
            gpus.append({
                "name": parts[0], "driver": parts[1], "memory": parts[2],
                "compute_capability": parts[3] if len(parts) > 3 else None,
            })
    return gpus


def library_versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in LIBRARIES:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def command_line(argv: list[str] | None = None) -> str:
    argv = list(sys.argv if argv is None else argv)
    if argv:
        argv[0] = Path(argv[0]).name
    return shlex.join(argv)


def collect_environment(argv: list[str] | None = None) -> dict[str, Any]:
    """Everything about where and how a benchmark ran (see the module docstring)."""
    try:
        import onnxruntime as ort

        ort_providers = list(ort.get_available_providers())
    except ImportError:
        ort_providers = []
    return {
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(argv),
        "cwd": os.getcwd(),
        "platform": platform.platform(),
        "cpu": cpu_info(),
        "memory_gib": memory_gib(),
        "gpus": gpu_info(),
        "libraries": library_versions(),
        "onnxruntime_providers_in_build": ort_providers,
        "load_average_before": load_average(),
    }
