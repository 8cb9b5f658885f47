"""Compute per image from the ONNX graph, and this CPU's peaks, for efficiency figures.

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

Each latency row is shown against the peak of the arithmetic it runs (:func:`row_peak`): fp32
rows against the FP32 peak; fp16 rows too (onnxruntime's CPU provider computes them in
fp32); int8 rows against the int8 peak of the ISA (:func:`cpu_int8_peak`: VNNI 4×, without
VNNI 2× the FP32 MACs per cycle), weighted by the share of the MACs onnxruntime really runs as
int8 (:func:`runtime_int8_share`). Where no honest peak exists the cell stays empty.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from cifarkit.errors import ModelError
from cifarkit.measure.machine import cpu_flags, cpuinfo_field, read_cpuinfo

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
        elif op in ("Gemm", "QGemm"):  # QGemm: onnxruntime's fused int8 Gemm (B at input 3)
            a = shapes.get(node.input[0])
            b = shapes.get(node.input[1 if op == "Gemm" else 3])
            out = shapes.get(node.output[0])
            trans_a = any(at.name == "transA" and at.i for at in node.attribute)
            trans_b = any(at.name == "transB" and at.i for at in node.attribute)
            if not out and a and b and len(a) == len(b) == 2:  # contrib ops: no inference
                out = [a[1] if trans_a else a[0], b[0] if trans_b else b[1]]
                shapes[node.output[0]] = out  # for a QGemm that follows
            if not a or not b or not out:
                uncounted.append(node.name or op)
                continue
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
    #: the arithmetic the peak is of: "fp32", "int8", or a mix ("int8 64 % + fp32 36 %")
    arithmetic: str = "fp32"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cpu_clock_ghz(cpuinfo: str | None = None) -> tuple[float, str] | None:
    """(GHz, where it came from) or None when nothing says."""
    sysfs = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    try:
        khz = int(sysfs.read_text().strip())
        if khz > 0:
            return khz / 1e6, f"{sysfs} (maximum clock)"
    except (OSError, ValueError):
        pass
    text = read_cpuinfo() if cpuinfo is None else cpuinfo
    mhz = cpuinfo_field(text, "cpu MHz")
    try:
        if mhz and float(mhz) > 0:
            return float(mhz) / 1e3, "/proc/cpuinfo 'cpu MHz' (reported clock; boost not visible)"
    except ValueError:
        pass
    return None


class _Cpu(NamedTuple):
    flags: set[str]
    ghz: float
    source: str  # where the clock came from
    wide512: bool  # AVX-512 on full 512-bit units (not AMD before Zen 5's family 26)


def _cpu(cores: int, flags: set[str] | None, cpuinfo: str | None,
         clock: tuple[float, str] | None) -> _Cpu | None:
    """What a peak is derived from (``cpuinfo`` and ``flags`` default to this machine's);
    None when the clock is unknown (no ``/proc/cpuinfo``) or there are no cores."""
    text = read_cpuinfo() if cpuinfo is None else cpuinfo
    flags = cpu_flags(text) if flags is None else flags
    clock = clock or cpu_clock_ghz(text)
    if clock is None or cores < 1:
        return None
    vendor = cpuinfo_field(text, "vendor_id") or ""
    try:
        family = int(cpuinfo_field(text, "cpu family") or 0)
    except ValueError:
        family = 0
    wide512 = "avx512f" in flags and (vendor != "AuthenticAMD" or family >= 26)
    return _Cpu(flags, clock[0], clock[1], wide512)


def cpu_fp32_peak(
    cores: int, *, flags: set[str] | None = None, cpuinfo: str | None = None,
    clock: tuple[float, str] | None = None,
) -> CpuPeak | None:
    """The FP32 peak of ``cores`` cores of this CPU (see the module docstring), or None when
    the clock is unknown (no ``/proc/cpuinfo``)."""
    cpu = _cpu(cores, flags, cpuinfo, clock)
    if cpu is None:
        return None
    flags, ghz, source = cpu.flags, cpu.ghz, cpu.source
    if cpu.wide512:
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


# --- the peak of the arithmetic a row runs ---------------------------------------------------

#: onnxruntime ops that multiply int8 by int8 (int32 accumulators)
INT8_OPS = frozenset({"QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger", "QGemm",
                      "MatMulIntegerToFloat", "DynamicQuantizeMatMul"})


def cpu_int8_peak(
    cores: int, *, flags: set[str] | None = None, cpuinfo: str | None = None,
    clock: tuple[float, str] | None = None,
) -> CpuPeak | None:
    """The int8 peak (int8 multiply-adds into int32) of ``cores`` cores, from the ISA.

    Per core and cycle, with the same 2 vector units assumed as for FP32:

    - AMX-INT8: ``TDPBUSD`` multiplies a 16×64 by a 64×16 int8 tile (16,384 MACs) in 16
      cycles: 1,024 MACs;
    - AVX-512 VNNI / AVX-VNNI: ``vpdpbusd`` does one u8×s8 MAC per byte of the vector (64 at
      512 bits, 32 at 256: Zen 4's AVX-512 and AVX-VNNI) → 2 × 64 or 2 × 32;
    - AVX2 / AVX-512BW / SSSE3 without VNNI: ``vpmaddubsw`` (u8×s8, pairs summed to int16)
      then ``vpmaddwd`` (int16 pairs to int32) — two instructions on the multiply ports per
      byte-wide MAC vector → half of VNNI's: 2 × 32 / 2 at 256 bits;
    - none of those: no honest peak (None).

    That is 4× (VNNI) or 2× (without) the FP32 FMA peak at the same vector width. An "op" is
    2 per MAC, as for FLOPs.
    """
    cpu = _cpu(cores, flags, cpuinfo, clock)
    if cpu is None:
        return None
    flags, ghz, source, wide512 = cpu.flags, cpu.ghz, cpu.source, cpu.wide512
    units = 2
    if "amx_int8" in flags:
        macs, isa = 1024, "AMX-INT8 (TDPBUSD: 16,384 MACs per 16 cycles)"
    elif "avx512_vnni" in flags:
        vec = 64 if wide512 else 32
        macs = units * vec
        isa = ("AVX-512 VNNI (vpdpbusd, 64 MACs)" if wide512 else
               "AVX-512 VNNI on 256-bit units (AMD Zen 4: 32 MACs per vpdpbusd)")
    elif "avx_vnni" in flags:
        macs, isa = units * 32, "AVX-VNNI (vpdpbusd ymm, 32 MACs)"
    elif "avx512bw" in flags and wide512:
        macs, isa = units * 64 // 2, "AVX-512BW without VNNI (vpmaddubsw + vpmaddwd: 64 MACs)"
    elif "avx2" in flags:
        macs, isa = units * 32 // 2, "AVX2 without VNNI (vpmaddubsw + vpmaddwd: 32 MACs)"
    elif "ssse3" in flags:
        macs, isa = units * 16 // 2, "SSSE3 (pmaddubsw + pmaddwd: 16 MACs)"
    else:
        return None
    per_cycle = 2 * macs
    gops = cores * ghz * per_cycle
    how = f"{macs} MACs" if "AMX" in isa else (
        f"{units} vector units (assumed) × {macs // units} MACs")
    derivation = (
        f"{cores} core{'s' if cores != 1 else ''} × {ghz:.2f} GHz × {per_cycle} int8 op/cycle "
        f"({how} per cycle, {isa}; 2 ops per multiply-add) = {gops:.1f} GOP/s; "
        f"clock from {source}"
    )
    return CpuPeak(
        gflops=gops, cores=cores, ghz=ghz, ghz_source=source, fma_units=units,
        simd_lanes=macs // units, isa=isa, flops_per_cycle_per_core=per_cycle,
        derivation=derivation, arithmetic="int8",
    )


def _probabilities_only(path: str | os.PathLike[str]) -> bytes:
    """The file's graph without a ``score`` output's branch (export's unknown score, a float
    side branch the counter cannot shape after onnxruntime's fusions): not what the peak is
    about."""
    import onnx

    from cifarkit.contract import probabilities_only

    model = onnx.load(os.fspath(path))
    probabilities_only(model.graph)
    return model.SerializeToString()


def runtime_int8_share(path: str | os.PathLike[str]) -> float | None:
    """The share of a model's MACs that onnxruntime's CPU provider runs as int8 × int8.

    onnxruntime fuses a QDQ graph's DequantizeLinear → Conv → QuantizeLinear into
    ``QLinearConv`` where it can and leaves the rest in fp32 (fastnet's int8 file: 3 of 7
    convolutions, 64 % of the MACs). The graph after its extended optimisations (fusions, not
    yet the CPU-specific layouts) says which: MACs of :data:`INT8_OPS` over all MACs. None when
    that graph cannot be counted.
    """
    import tempfile

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
        so.log_severity_level = 3
        try:
            ort.InferenceSession(_probabilities_only(path), so,
                                 providers=["CPUExecutionProvider"])
            macs = count_macs(so.optimized_model_filepath)
        except Exception:  # a peak is a footnote: no share rather than no benchmark
            return None
    if macs.uncounted or not macs.macs_per_image:
        return None
    int8 = sum(v for k, v in macs.by_op.items() if k in INT8_OPS)
    return int8 / macs.macs_per_image


def mixed_peak(fp32: CpuPeak, int8: CpuPeak, int8_share: float) -> CpuPeak:
    """The peak of a graph that runs ``int8_share`` of its MACs as int8, the rest as fp32:
    all MACs over the least time they can take (each part at its own peak)."""
    if int8_share >= 1.0:
        return int8
    if int8_share <= 0.0:
        return fp32
    gops = 1.0 / (int8_share / int8.gflops + (1.0 - int8_share) / fp32.gflops)
    label = f"int8 {int8_share:.0%} + fp32 {1 - int8_share:.0%}".replace("%", " %")
    derivation = (
        f"{label} of the MACs (onnxruntime's optimised graph): 1 / ({int8_share:.3f} / "
        f"{int8.gflops:.1f} + {1 - int8_share:.3f} / {fp32.gflops:.1f}) = {gops:.1f} GOP/s, "
        f"with the int8 peak {int8.derivation.split('; clock from')[0]}"
    )
    return CpuPeak(
        gflops=gops, cores=fp32.cores, ghz=fp32.ghz, ghz_source=fp32.ghz_source,
        fma_units=fp32.fma_units, simd_lanes=fp32.simd_lanes, isa=f"{int8.isa}; {fp32.isa}",
        flops_per_cycle_per_core=0, derivation=derivation, arithmetic=label,
    )


def row_peak(precision: str, cores: int, *, int8_share: float | None = None,
             flags: set[str] | None = None, cpuinfo: str | None = None,
             clock: tuple[float, str] | None = None) -> CpuPeak | None:
    """The peak a CPU row of ``precision`` is measured against (None: no honest peak).

    - fp32: the FP32 FMA peak;
    - fp16: the FP32 peak too — onnxruntime's CPU provider has no x86 fp16 convolution: it
      inserts Casts and runs them in fp32 (seen in its optimised graph). On a CPU with
      AVX512-FP16 some kernels may run fp16: no honest peak there;
    - int8: the int8 peak, or the mix of both for the share ``int8_share`` of the MACs that
      onnxruntime runs as int8 (:func:`runtime_int8_share`); None when that is unknown.
    """
    kw = {"flags": flags, "cpuinfo": cpuinfo, "clock": clock}
    have = cpu_flags(cpuinfo) if flags is None else flags
    if precision == "fp32":
        return cpu_fp32_peak(cores, **kw)
    if precision == "fp16":
        return None if "avx512_fp16" in have else cpu_fp32_peak(cores, **kw)
    if precision == "int8" and int8_share is not None:
        fp32, int8 = cpu_fp32_peak(cores, **kw), cpu_int8_peak(cores, **kw)
        if fp32 is None or int8 is None:
            return None
        return mixed_peak(fp32, int8, int8_share)
    return None
