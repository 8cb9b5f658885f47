"""Execution providers: names, options, what is installed, and why one is not usable.

cifarkit's provider names map to onnxruntime's:

    cpu       CPUExecutionProvider        every onnxruntime build
    cuda      CUDAExecutionProvider       onnxruntime-gpu + CUDA 12/13 and cuDNN 9 libraries
    tensorrt  TensorrtExecutionProvider   onnxruntime-gpu + the CUDA libraries + TensorRT
    openvino  OpenVINOExecutionProvider   onnxruntime-openvino (Intel CPUs, iGPUs, NPUs)
    auto      the first of cuda, openvino, cpu that really becomes active

onnxruntime lists a provider in ``get_available_providers()`` when the build *contains* it,
not when it can run: onnxruntime-gpu without the CUDA libraries (or without a GPU) lists
``CUDAExecutionProvider``, then falls back to CPU at session creation with only a log line.
So the only reliable test is the one ``Classifier`` makes: create the session and check
``session.get_providers()``. ``provider_problem()`` explains a failure after the fact.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any

from cifarkit._capture import captured_output
from cifarkit.errors import ProviderError, UsageError

ORT_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}
PROVIDERS = (*ORT_NAMES, "auto")
# Order tried by ``auto``. TensorRT is left out: its first run builds engines for minutes.
AUTO_ORDER = ("cuda", "openvino", "cpu")
GPU_PROVIDERS = frozenset({"cuda", "tensorrt"})

INSTALL_HINTS = {
    "cpu": "pip install onnxruntime (or onnxruntime-gpu, which includes the CPU provider)",
    "cuda": (
        "pip install 'onnxruntime-gpu[cuda,cudnn]' (CUDA and cuDNN from PyPI; or a system CUDA "
        "toolkit + cuDNN 9 on LD_LIBRARY_PATH) on a machine with an NVIDIA GPU and driver "
        "(check with nvidia-smi); `pip install cifarkit[cuda]` does this"
    ),
    "tensorrt": (
        "the CUDA requirements, plus TensorRT 10 (pip install tensorrt-cu12, or the system "
        "TensorRT libraries on LD_LIBRARY_PATH)"
    ),
    "openvino": (
        "pip install onnxruntime-openvino (in place of onnxruntime/onnxruntime-gpu: only one "
        "onnxruntime package can be installed)"
    ),
}

# Defaults merged under the user's provider_options (user values win).
# cuda: cuDNN's exhaustive convolution search (onnxruntime's default, stated so the benchmark
# records it) with the maximum workspace, which lets cuDNN pick the fastest algorithms.
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "cuda": {"cudnn_conv_algo_search": "EXHAUSTIVE", "cudnn_conv_use_max_workspace": "1"},
    "tensorrt": {"trt_engine_cache_enable": "True", "trt_timing_cache_enable": "True"},
    "openvino": {"device_type": "CPU"},
}


def ort_name(provider: str) -> str:
    try:
        return ORT_NAMES[provider]
    except KeyError:
        raise UsageError(
            f"unknown provider {provider!r}; choose one of: {', '.join(PROVIDERS)}"
        ) from None


def short_name(ort_provider: str) -> str:
    for short, long in ORT_NAMES.items():
        if long == ort_provider:
            return short
    return ort_provider


def available_providers() -> list[str]:
    """cifarkit names of the providers this onnxruntime build contains (not a promise they run:
    see the module docstring)."""
    import onnxruntime as ort

    present = set(ort.get_available_providers())
    return [name for name, long in ORT_NAMES.items() if long in present]


def tensorrt_cache_dir() -> Path:
    """TensorRT engine and timing caches: ``$CIFARKIT_CACHE/tensorrt`` or the user cache."""
    if env := os.environ.get("CIFARKIT_CACHE"):
        return Path(env) / "tensorrt"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cifarkit" / "tensorrt"


def provider_options(
    provider: str, user: dict[str, Any] | None = None, *, max_batch: int = 256, opt_batch: int = 32
) -> dict[str, str]:
    """The options handed to onnxruntime for ``provider``: defaults, then ``user``'s."""
    opts: dict[str, Any] = dict(DEFAULT_OPTIONS.get(provider, {}))
    if provider == "tensorrt":
        cache = tensorrt_cache_dir()
        opts["trt_engine_cache_path"] = os.fspath(cache)
        opts["trt_timing_cache_path"] = os.fspath(cache)
        # The batch dimension is dynamic: one optimisation profile covers 1..max_batch.
        opts["trt_profile_min_shapes"] = "images:1x32x32x3"
        opts["trt_profile_opt_shapes"] = f"images:{opt_batch}x32x32x3"
        opts["trt_profile_max_shapes"] = f"images:{max_batch}x32x32x3"
    opts.update(user or {})
    return {str(k): str(v) for k, v in opts.items()}


def _nvidia_gpu_visible() -> bool | None:
    """True/False when we can tell from the device nodes (Linux), None elsewhere."""
    if os.name != "posix" or not Path("/dev").is_dir():
        return None
    return any(Path("/dev").glob("nvidia[0-9]*"))


def _library_problem(library: str) -> str | None:
    """Try to load an onnxruntime provider library; the loader's error names what is missing."""
    import onnxruntime as ort

    capi = Path(ort.__file__).parent / "capi"
    path = capi / library
    if not path.exists():
        return f"{library} is not in this onnxruntime package"
    try:
        if hasattr(ort, "preload_dlls"):  # onnxruntime >= 1.21: CUDA/cuDNN from PyPI wheels
            with captured_output():
                ort.preload_dlls()
        # The shared bridge first: the provider library links against it.
        ctypes.CDLL(os.fspath(capi / "libonnxruntime_providers_shared.so"), mode=ctypes.RTLD_GLOBAL)
        ctypes.CDLL(os.fspath(path))
    except OSError as exc:
        return f"loading {library} failed: {exc}"
    return None


def provider_problem(provider: str) -> str | None:
    """Why ``provider`` can't run here, as far as can be told without a session (None: no
    known obstacle). Used to explain a provider that did not become active."""
    long = ort_name(provider)
    import onnxruntime as ort

    if long not in ort.get_available_providers():
        return (
            f"this onnxruntime build ({ort.__version__}, package {_ort_package()}) does not "
            f"include {long}"
        )
    if provider in GPU_PROVIDERS and os.name == "posix":
        reasons = []
        if _nvidia_gpu_visible() is False:
            reasons.append("no NVIDIA GPU is visible (no /dev/nvidia* device)")
        lib = "libonnxruntime_providers_cuda.so"
        if (why := _library_problem(lib)) is not None:
            reasons.append(why)
        if provider == "tensorrt":
            lib = "libonnxruntime_providers_tensorrt.so"
            if (why := _library_problem(lib)) is not None:
                reasons.append(why)
        if reasons:
            return "; ".join(reasons)
    return None


def _ort_package() -> str:
    from importlib import metadata

    for dist in ("onnxruntime-gpu", "onnxruntime", "onnxruntime-openvino", "onnxruntime-directml"):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def inactive_provider_error(provider: str, active: list[str], detail: str = "") -> ProviderError:
    """The error for a requested provider that did not become active in the session."""
    why = provider_problem(provider) or detail or "onnxruntime fell back to another provider"
    return ProviderError(
        f"provider {provider!r} ({ORT_NAMES[provider]}) is not active: {why}. "
        f"Session providers: {', '.join(short_name(p) for p in active) or 'none'}; "
        f"providers in this onnxruntime build: {', '.join(available_providers()) or 'none'}. "
        f"To use {provider}: {INSTALL_HINTS[provider]}. Or pass --provider cpu."
    )
