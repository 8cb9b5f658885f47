"""Compute per image from the ONNX graph, and this CPU's FP32 peak, for efficiency figures.

MACs (multiply-accumulates) per image are counted from the graph itself: the batch dimension
of the input is fixed to 1, onnx's shape inference fills in every tensor's shape, and each
compute node contributes

- ``Conv`` / ``ConvInteger`` / ``QLinearConv``: output elements × (input channels / groups)
  × kernel height × kernel width (= output elements × the weight's size over its first dim);
- ``Gemm``, ``MatMul`` / ``MatMulInteger`` / ``QLinearMatMul``: output elements × the inner
  dimension K.

Everything else (activations, pooling, normalisation, softmax) is left out: it is memory
traffic, not arithmetic, and is < 1 % of the FLOPs of a CIFAR CNN. Quantized (int8) and fp16
graphs count the same MACs as their fp32 source. FLOPs = 2 × MACs.

The FP32 peak of this CPU is ``cores × clock × FLOP/cycle/core`` with FLOP/cycle/core =
FMA units × FP32 SIMD lanes × 2 (an FMA is a multiply and an add):

- SIMD lanes: 16 with AVX-512 (Intel, and AMD Zen 5 = family ≥ 26), 8 with AVX/AVX2 (Zen 4
  runs AVX-512 on 256-bit units), 4 with SSE only;
- FMA units: 2 per core (every AVX2-era server core since Intel Haswell and AMD Zen 2; some
  low-end Xeons have one 512-bit unit, which halves their real peak) — an assumption, stated
  in the report (a CPU without FMA has a multiply and an add port instead: the same count);
- clock: ``cpuinfo_max_freq`` from sysfs when the kernel exposes it, else ``cpu MHz`` from
  ``/proc/cpuinfo`` (in a VM: the host's nominal clock; boost clocks are not visible, so
  the real peak can be higher and the share lower than stated);
- cores: the onnxruntime threads used, at most the physical cores.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cifarkit.errors import ModelError

# op type → index of its weight input (for Conv-like ops) or of its B input (MatMul-like)
_CONV_WEIGHT = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}
_MATMUL_A_B = {"MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3)}


@dataclass(frozen=True)
class MacCount:
    """Multiply-accumulates per image, in total and by op type."""

    macs_per_image: int
    by_op: dict[str, int] = field(default_factory=dict)
    #: nodes whose shapes could not be inferred (their MACs are missing from the total)
    uncounted: list[str] = field(default_factory=list)

    @property
    def flops_per_image(self) -> int:
        return 2 * self.macs_per_image

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["flops_per_image"] = self.flops_per_image
        return d


def _prod(dims: list[int]) -> int:
    out = 1
    for d in dims:
        out *= d
    return out


def count_macs(model: str | os.PathLike[str] | Any) -> MacCount:
    """MACs per image of an ONNX model (a path or a loaded ``onnx.ModelProto``)."""
    import onnx
    from onnx import shape_inference

    if isinstance(model, (str, os.PathLike)):
        try:
            proto = onnx.load(os.fspath(model))
        except Exception as exc:
            raise ModelError(f"{model}: cannot read the ONNX graph: {exc}") from None
    else:
        proto = onnx.ModelProto()
        proto.CopyFrom(model)

    init_names = {t.name for t in proto.graph.initializer}
    fixed_batch = 1
    for inp in proto.graph.input:
        if inp.name in init_names or not inp.type.tensor_type.shape.dim:
            continue
        dim = inp.type.tensor_type.shape.dim[0]
        if dim.HasField("dim_value") and dim.dim_value > 0:
            fixed_batch = max(fixed_batch, dim.dim_value)
        else:
            dim.Clear()
            dim.dim_value = 1
    try:
        inferred = shape_inference.infer_shapes(proto, data_prop=True)
    except Exception as exc:
        raise ModelError(f"shape inference failed on the ONNX graph: {exc}") from None
    g = inferred.graph

    shapes: dict[str, list[int] | None] = {}

    def note(vi: Any) -> None:
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            shapes[vi.name] = None
            return
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        shapes[vi.name] = None if any(d < 0 for d in dims) else dims

    for vi in [*g.input, *g.value_info, *g.output]:
        note(vi)
    for t in g.initializer:
        shapes[t.name] = list(t.dims)

    total = 0
    by_op: Counter[str] = Counter()
    uncounted = []
    for node in g.node:
        op = node.op_type
        if op in _CONV_WEIGHT:
            w = shapes.get(node.input[_CONV_WEIGHT[op]]) if len(node.input) > 1 else None
            out = shapes.get(node.output[0])
            if not w or not out:
                uncounted.append(node.name or op)
                continue
            macs = _prod(out) * _prod(w[1:])
        elif op == "Gemm":
            a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
            out = shapes.get(node.output[0])
            if not a or not b or not out:
                uncounted.append(node.name or op)
                continue
            trans_a = any(at.name == "transA" and at.i for at in node.attribute)
            k = a[0] if trans_a else a[-1]
            macs = _prod(out) * k
        elif op in _MATMUL_A_B:
            ia, _ = _MATMUL_A_B[op]
            a, out = shapes.get(node.input[ia]), shapes.get(node.output[0])
            if not a or not out:
                uncounted.append(node.name or op)
                continue
            macs = _prod(out) * a[-1]
        else:
            continue
        total += macs
        by_op[op] += macs
    per_image = {k: v // fixed_batch for k, v in by_op.items()}
    return MacCount(
        macs_per_image=total // fixed_batch, by_op=dict(sorted(per_image.items())),
        uncounted=uncounted,
    )


# --- the CPU's FP32 peak -------------------------------------------------------------------


@dataclass(frozen=True)
class CpuPeak:
    """This CPU's theoretical FP32 peak for ``cores`` cores, and how it was derived."""

    gflops: float
    cores: int
    ghz: float
    ghz_source: str
    fma_units: int
    simd_lanes: int
    isa: str
    flops_per_cycle_per_core: int
    derivation: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _field(text: str, name: str) -> str | None:
    m = re.search(rf"^{re.escape(name)}\s*:\s*(.*)$", text, re.MULTILINE)
    return m.group(1).strip() if m else None


def cpu_clock_ghz(cpuinfo: str | None = None) -> tuple[float, str] | None:
    """(GHz, where it came from) or None when nothing says."""
    sysfs = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    try:
        khz = int(sysfs.read_text().strip())
        if khz > 0:
            return khz / 1e6, f"{sysfs} (maximum clock)"
    except (OSError, ValueError):
        pass
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    mhz = _field(text, "cpu MHz")
    try:
        if mhz and float(mhz) > 0:
            return float(mhz) / 1e3, "/proc/cpuinfo 'cpu MHz' (reported clock; boost not visible)"
    except ValueError:
        pass
    return None


def cpu_fp32_peak(
    cores: int, *, flags: set[str] | None = None, cpuinfo: str | None = None,
    clock: tuple[float, str] | None = None,
) -> CpuPeak | None:
    """The FP32 peak of ``cores`` cores of this CPU (see the module docstring), or None when
    the clock is unknown (no ``/proc/cpuinfo``)."""
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    if flags is None:
        raw = _field(text, "flags") or ""
        flags = set(raw.split())
    clock = clock or cpu_clock_ghz(text)
    if clock is None or cores < 1:
        return None
    ghz, source = clock
    vendor = _field(text, "vendor_id") or ""
    try:
        family = int(_field(text, "cpu family") or 0)
    except ValueError:
        family = 0
    if "avx512f" in flags and (vendor != "AuthenticAMD" or family >= 26):
        lanes, isa = 16, "AVX-512"
    elif "avx512f" in flags:
        lanes, isa = 8, "AVX-512 on 256-bit units (AMD Zen 4)"
    elif "avx2" in flags or "avx" in flags:
        lanes, isa = 8, "AVX2" if "avx2" in flags else "AVX"
    else:
        lanes, isa = 4, "SSE"
    fma_units = 2
    per_cycle = fma_units * lanes * 2
    gflops = cores * ghz * per_cycle
    unit = "FMA units" if "fma" in flags else "multiply + add ports"
    derivation = (
        f"{cores} core{'s' if cores != 1 else ''} × {ghz:.2f} GHz × {per_cycle} FP32 FLOP/cycle "
        f"({fma_units} {unit} (assumed) × {lanes} lanes ({isa}) × 2 FLOP per multiply-add) = "
        f"{gflops:.1f} GFLOP/s; clock from {source}"
    )
    return CpuPeak(
        gflops=gflops, cores=cores, ghz=ghz, ghz_source=source, fma_units=fma_units,
        simd_lanes=lanes, isa=isa, flops_per_cycle_per_core=per_cycle, derivation=derivation,
    )


def achieved_gflops(macs_per_image: int | None, images_per_s: float) -> float | None:
    if not macs_per_image:
        return None
    return 2 * macs_per_image * images_per_s / 1e9
