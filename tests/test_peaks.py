"""The "% of peak" column: each row against the peak of the arithmetic it runs (issue 22)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cifarkit.bench import BenchConfig, run_bench, to_dict
from cifarkit.data import CLASSES
from cifarkit.measure.flops import (
    count_macs,
    cpu_fp32_peak,
    cpu_int8_peak,
    mixed_peak,
    row_peak,
    runtime_int8_share,
)
from tests.conftest import synthetic_images

REPO = Path(__file__).resolve().parents[1]
INTEL = "vendor_id\t: GenuineIntel\ncpu family\t: 6\n"
ZEN3 = "vendor_id\t: AuthenticAMD\ncpu family\t: 25\n"  # Zen 3 and Zen 4 are both family 25
ZEN5 = "vendor_id\t: AuthenticAMD\ncpu family\t: 26\n"
CLOCK = (2.0, "test")


def _macs_per_cycle(flags: set[str], cpuinfo: str) -> tuple[int, int | None]:
    """(FP32 MACs, int8 MACs) per core and cycle."""
    fp32 = cpu_fp32_peak(1, flags=flags, cpuinfo=cpuinfo, clock=CLOCK)
    int8 = cpu_int8_peak(1, flags=flags, cpuinfo=cpuinfo, clock=CLOCK)
    return fp32.flops_per_cycle_per_core // 2, (
        None if int8 is None else int8.flops_per_cycle_per_core // 2)


@pytest.mark.parametrize("flags, cpuinfo, fp32, int8, isa", [
    # vpdpbusd zmm: 64 u8×s8 MACs per instruction, 2 units; fp32: 2 FMA × 16 lanes
    ({"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni"}, INTEL, 32, 128, "VNNI"),
    ({"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni"}, ZEN5, 32, 128, "VNNI"),
    # Zen 4: AVX-512 (and its VNNI) on 256-bit units
    ({"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni"}, ZEN3, 16, 64, "Zen 4"),
    ({"avx2", "fma", "avx_vnni"}, INTEL, 16, 64, "AVX-VNNI"),
    # without VNNI: vpmaddubsw + vpmaddwd, half of VNNI, 2× fp32
    ({"avx2", "fma", "avx512f", "avx512bw"}, INTEL, 32, 64, "AVX-512BW"),
    ({"avx2", "fma"}, ZEN3, 16, 32, "AVX2 without VNNI"),
    ({"ssse3"}, INTEL, 8, 16, "SSSE3"),
    ({"avx2", "fma", "avx512f", "avx512_vnni", "amx_int8"}, INTEL, 32, 1024, "AMX"),
    ({"sse2"}, INTEL, 8, None, None),  # no int8 dot-product instruction: no peak
])
def test_int8_peak_from_the_isa(flags, cpuinfo, fp32, int8, isa):
    got_fp32, got_int8 = _macs_per_cycle(flags, cpuinfo)
    assert (got_fp32, got_int8) == (fp32, int8)
    if isa:
        peak = cpu_int8_peak(2, flags=flags, cpuinfo=cpuinfo, clock=CLOCK)
        assert isa in peak.isa and peak.arithmetic == "int8"
        assert peak.gflops == pytest.approx(2 * 2.0 * 2 * int8)
        assert "GOP/s" in peak.derivation and "2 ops per multiply-add" in peak.derivation


def test_row_peak_per_precision():
    kw = {"flags": {"avx2", "fma", "avx512f", "avx512_vnni"}, "cpuinfo": INTEL, "clock": CLOCK}
    fp32 = row_peak("fp32", 2, **kw)
    assert fp32.arithmetic == "fp32"
    # fp16 runs in fp32 on the CPU provider: the same peak; with AVX512-FP16 there is none
    assert row_peak("fp16", 2, **kw).gflops == fp32.gflops
    assert row_peak("fp16", 2, **{**kw, "flags": kw["flags"] | {"avx512_fp16"}}) is None
    assert row_peak("int8", 2, **kw) is None  # which MACs run as int8 is unknown
    int8 = row_peak("int8", 2, int8_share=1.0, **kw)
    assert int8.arithmetic == "int8" and int8.gflops == pytest.approx(4 * fp32.gflops)
    half = row_peak("int8", 2, int8_share=0.5, **kw)
    # half the MACs at 4× and half at 1×: 1 / (0.5/4 + 0.5/1) = 1.6× the FP32 peak
    assert half.gflops == pytest.approx(1.6 * fp32.gflops) and "50 %" in half.arithmetic
    assert mixed_peak(fp32, int8, 0.0) is fp32


@pytest.mark.parametrize("name", ["cnn-batchnorm", "fastnet", "fastnet-relu"])
def test_int8_share_of_the_shipped_models(name):
    path = REPO / "exported" / name / "model.int8.onnx"
    if not path.is_file():
        pytest.skip(f"{path} not shipped")
    share = runtime_int8_share(path)
    assert share is not None and 0.0 < share <= 1.0
    # cnn-batchnorm's and fastnet-relu's every Conv and Gemm is fused into QLinearConv/QGemm;
    # GELU fastnet's stem and some of its convolutions stay fp32 in onnxruntime's graph
    if name in ("cnn-batchnorm", "fastnet-relu"):
        assert share == 1.0
    else:
        assert share < 0.9
    assert count_macs(path).macs_per_image > 0


def _synthetic(n: int) -> dict:
    """Images for ``run_bench``: these tests time the shipped files, so any pixels do, and
    they need no CIFAR-10 download (without ``CIFARKIT_DATA`` they failed for want of data)."""
    x, y = synthetic_images(n)
    return {"images": x, "labels": y, "classes": CLASSES, "data_source": "synthetic"}


def test_no_row_beyond_its_peak():
    """Measured, not assumed: every CPU row of the shipped cnn-batchnorm (fp32, int8) stays
    within the peak of the arithmetic it runs; before, int8 rows showed 122-127 % of the FP32
    peak. Where the clock is the VM's reported one (boost not visible), a boosting core can
    pass the stated peak: up to 1.6× (a 2.6 GHz nominal Zen 5 boosts to about 4.1 GHz; seen:
    110 %), and the report says so."""
    folder = REPO / "exported" / "cnn-batchnorm"
    if not folder.is_dir():
        pytest.skip("cnn-batchnorm not shipped")
    cfg = BenchConfig(models=[str(folder)], limit=64, providers=["cpu"], batch_sizes=[32],
                      warmup=2, iterations=5, threads=1)
    data = to_dict(run_bench(cfg, **_synthetic(64)))
    rows = [r for r in data["latency"] if r["status"] == "ok"]
    assert {r["precision"] for r in rows} >= {"fp32", "int8"}
    boost_hidden = all("boost not visible" in p["derivation"] for p in data["cpu_peak"])
    bound = 1.6 if boost_hidden else 1.0
    for r in rows:
        if r["peak_share"] is not None:
            assert 0.0 < r["peak_share"] <= bound, r
    by = {r["precision"]: r for r in rows}
    assert by["int8"]["peak"] == "int8" and by["fp32"]["peak"] == "fp32"
    titles = [p["arithmetic"] for p in data["cpu_peak"]]
    assert "fp32" in titles and "int8" in titles


def test_other_runtimes_int8_rows_against_the_all_int8_peak():
    """onnxruntime's int8 share describes onnxruntime's graph only: another runtime's int8
    rows (here OpenVINO on the GELU fastnet, whose onnxruntime graph keeps 36 % of its MACs in
    fp32) are shown against the all-int8 peak; before, LiteRT's rows showed 219 %."""
    pytest.importorskip("openvino")
    folder = REPO / "exported" / "fastnet"
    if not folder.is_dir():
        pytest.skip("fastnet not shipped")
    cfg = BenchConfig(models=[str(folder)], precisions=["int8"], limit=32, providers=["cpu"],
                      runtimes=["onnxruntime", "openvino"], batch_sizes=[8], warmup=1,
                      iterations=3, threads=1)
    data = to_dict(run_bench(cfg, **_synthetic(32)))
    by = {r["runtime"]: r for r in data["latency"] if r["status"] == "ok"}
    assert by["openvino"]["peak"] == "int8"
    assert by["onnxruntime"]["peak"].startswith("int8 64 %")
    for r in by.values():
        assert 0.0 < r["peak_share"] <= 1.6, r
