"""``Classifier``: one onnxruntime session that honours the cifarkit ONNX contract.

The contract (``design.md``): one input ``images`` uint8 ``[batch, 32, 32, 3]`` RGB 0–255,
one output ``probabilities`` float32 ``[batch, n_classes]``, class names in the metadata
(``class_names``, a JSON list). Also accepted, because models made elsewhere look like this:

- a float32 (or float16) input ``[batch, 32, 32, 3]`` taking pixels scaled to 0–1
  (``input_kind == "float01"``), or to 0–255 when the metadata's ``input_description`` or
  ``input_range`` says so (``"float255"``): the classifier scales the uint8 images itself;
- a fixed batch dimension (e.g. 1): requests are cut into chunks of that size, the last one
  zero-padded;
- several outputs when one is called ``probabilities``; float16 outputs (returned as float32);
  an output ``score`` (float32/float16 ``[batch]``): ``has_score``, and ``run_outputs`` /
  ``predict_scored`` return it with the probabilities, from the same ``session.run``;
- no ``class_names`` when there are 10 outputs (the CIFAR-10 names are used).

Anything else (channels-first input, other element types, a class count that does not match
the names, outputs that are not probabilities) raises ``ModelError`` saying what is wrong.
The output check ("rows are probabilities") runs on the first batch.

Batching: ``predict_proba`` cuts any request into chunks of ``batch_size``. Which size runs
fastest depends on the model, the provider and how busy the machine is: on an idle 2-core
CPU the notebook's CNN ran at 5,826 img/s in batches of 32 but 2,666 at 256 (activations
outgrow the caches), while with the same CPU shared with a training job the ranking of
16…256 changed from run to run (thread-pool synchronisation per chunk costs more when
threads get descheduled). So unless ``batch_size`` is given,
the classifier tunes it online: its first requests are cut into chunks of each candidate
size in turn (``CHUNK_CANDIDATES``), each timed a few times, and from then on it uses the
size with the best median time per image. That costs nothing extra (every chunk is real
work) and adapts to the conditions of the run. ``chunk_timings`` shows the measurements.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit import contract
from cifarkit._capture import captured_output, clean_log
from cifarkit.backends._base import Runtime, RuntimeModel
from cifarkit.backends.providers import (
    AUTO_ORDER,
    GPU_PROVIDERS,
    ORT_NAMES,
    PROVIDERS,
    available_providers,
    inactive_provider_error,
    ort_name,
    provider_options,
    short_name,
)
from cifarkit.errors import ModelError, ProviderError, UsageError
from cifarkit.measure.machine import physical_cores

# Chunk size before tuning has settled (and when tuning is off), per provider.
PREFERRED_BATCH = {"cpu": 64, "openvino": 64, "cuda": 256, "tensorrt": 256}
# Sizes the online tuner tries; GPUs want large batches to fill the device.
CHUNK_CANDIDATES = {
    "cpu": (16, 32, 64, 128, 256),
    "openvino": (16, 32, 64, 128, 256),
    "cuda": (64, 128, 256, 512, 1024),
    "tensorrt": (64, 128, 256, 512, 1024),
}
TUNING_SAMPLES = 5  # timed chunks per candidate (after one untimed warm-up chunk)
# Largest batch the TensorRT optimisation profile covers.
TENSORRT_MAX_BATCH = 1024

_ELEMENT_TYPES = {
    "tensor(uint8)": np.uint8,
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
}


def _dims(shape: Any) -> list[int | None]:
    """onnxruntime shapes hold ints, names of symbolic dims, or None: symbolic → None."""
    return [d if isinstance(d, int) and d > 0 else None for d in (shape or [])]


class Classifier:
    """An ONNX CIFAR-10 classifier on one onnxruntime execution provider.

    ``provider``: ``cpu``, ``cuda``, ``tensorrt``, ``openvino`` or ``auto`` (the first of
    ``cuda``, ``openvino``, ``cpu`` that becomes active). The provider asked for is really
    active, or ``ProviderError`` says why not and what to install — no silent CPU fallback,
    at creation or later (onnxruntime's run-time fallback is disabled).
    ``threads``: onnxruntime intra-op threads (default: the physical cores).
    ``batch_size``: the chunk size requests are cut into (default: tuned online, see the
    module docstring; fixed models: their batch size).
    ``provider_options``: merged over ``providers.DEFAULT_OPTIONS`` (e.g. cuda's
    ``cudnn_conv_algo_search``, ``cudnn_conv_use_max_workspace``, ``device_id``).
    ``io_binding``: run through an I/O binding — on a GPU the batch is copied to the device
    once into a reused buffer and the output is bound on the device, then copied back.
    ``allow_spinning``: let onnxruntime's threads busy-wait between runs (its default, fast
    when nothing else needs the cores); ``predict`` turns it off while decoder processes
    share the CPU.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        provider: str = "cpu",
        *,
        threads: int | None = None,
        batch_size: int | None = None,
        provider_options: dict[str, Any] | None = None,
        io_binding: bool = False,
        allow_spinning: bool = True,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            what = "is a directory" if self.path.is_dir() else "does not exist"
            raise ModelError(f"model file {self.path} {what}")
        if provider not in PROVIDERS:
            choices = ", ".join(PROVIDERS)
            raise UsageError(f"unknown provider {provider!r}; choose one of: {choices}")
        if threads is not None and threads < 1:
            raise UsageError(f"threads must be >= 1, got {threads}")
        if batch_size is not None and batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {batch_size}")
        self.requested_provider = provider
        self.threads = threads or physical_cores()
        self.io_binding = bool(io_binding)
        self.allow_spinning = allow_spinning
        self._user_options = dict(provider_options or {})
        self._session: Any = None
        self._checked_output = False
        self._checked_score = False
        self.has_score = False
        self._device_buffers: dict[int, tuple[Any, dict[str, Any]]] = {}
        # Device-buffer binding (input copied into a reused OrtValue, output bound there).
        # Always on GPUs; settable on CPU so tests exercise that path without a GPU.
        self._device_copy = False

        if provider == "auto":
            self._open_auto()
        else:
            self._open(provider)
        try:
            self._check_contract()
        except BaseException:
            self.close()
            raise
        self._tuner: _ChunkTuner | None = None
        if self.fixed_batch:
            self._batch_size = self.fixed_batch  # the model accepts no other size
        elif batch_size:
            self._batch_size = batch_size
        else:
            self._batch_size = PREFERRED_BATCH[self.provider]
            self._tuner = _ChunkTuner(CHUNK_CANDIDATES[self.provider])

    @property
    def batch_size(self) -> int:
        """The chunk size requests are cut into: the tuned best once tuning has settled."""
        if self._tuner is not None and self._tuner.best is not None:
            return self._tuner.best
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        if value < 1:
            raise UsageError(f"batch_size must be >= 1, got {value}")
        if self.fixed_batch and value != self.fixed_batch:
            raise UsageError(f"this model takes batches of exactly {self.fixed_batch}")
        self._batch_size = value
        self._tuner = None  # an explicit size ends tuning

    @property
    def tuning(self) -> bool:
        """True while the chunk size is still being tuned."""
        return self._tuner is not None and self._tuner.best is None

    @property
    def chunk_timings(self) -> dict[int, float]:
        """Tuning measurements so far: chunk size → median img/s (empty when not tuning)."""
        return self._tuner.throughputs() if self._tuner is not None else {}

    # --- session ---------------------------------------------------------------------------

    def _session_options(self) -> Any:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # errors only; captured, see captured_output
        if not self.allow_spinning:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return so

    def _provider_list(self, provider: str) -> list[tuple[str, dict[str, str]]]:
        # With ``auto``, the user's options are meant for the accelerator, not the CPU.
        user = self._user_options if provider != "cpu" or self.requested_provider == "cpu" else {}
        opts = provider_options(
            provider, user, max_batch=TENSORRT_MAX_BATCH,
            opt_batch=PREFERRED_BATCH.get(provider, 32),
        )
        chain: list[tuple[str, dict[str, str]]] = [(ort_name(provider), opts)]
        if provider == "tensorrt":  # nodes TensorRT cannot take run on CUDA, then CPU
            chain.append((ORT_NAMES["cuda"], provider_options("cuda")))
        if provider != "cpu":
            chain.append((ORT_NAMES["cpu"], {}))
        self.provider_options = opts
        return chain

    def _open(self, provider: str) -> None:
        import onnxruntime as ort

        chain = self._provider_list(provider)
        if provider == "tensorrt":
            with contextlib.suppress(OSError):
                Path(chain[0][1]["trt_engine_cache_path"]).mkdir(parents=True, exist_ok=True)
        with captured_output() as log:
            if provider in GPU_PROVIDERS and hasattr(ort, "preload_dlls"):
                # CUDA/cuDNN installed from PyPI (onnxruntime-gpu[cuda,cudnn]) are found this way.
                with contextlib.suppress(Exception):
                    ort.preload_dlls()
            try:
                session = ort.InferenceSession(
                    os.fspath(self.path), self._session_options(),
                    providers=[name for name, _ in chain],
                    provider_options=[opts for _, opts in chain],
                )
            except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
                session, error = None, exc
        if session is None:
            message = str(error).strip()
            if provider != "cpu" and ("provider" in message.lower() or "EP" in message):
                raise ProviderError(
                    f"creating a {provider} session failed: {clean_log(message)}"
                ) from None
            raise ModelError(
                f"{self.path}: onnxruntime cannot load this model: {clean_log(message)}"
            ) from None
        active = list(session.get_providers())
        if not active or active[0] != ort_name(provider):
            raise inactive_provider_error(provider, active, clean_log(log.getvalue()))
        # onnxruntime's Python wrapper otherwise retries a failed run on the CPU.
        session.disable_fallback()
        self._session = session
        self.provider = provider
        self.active_providers = [short_name(p) for p in active]

    def _open_auto(self) -> None:
        tried = []
        present = set(available_providers())
        for candidate in AUTO_ORDER:
            if candidate not in present:
                continue
            try:
                self._open(candidate)
                return
            except ProviderError as exc:
                tried.append(str(exc))
        raise ProviderError("no provider became active:\n" + "\n".join(tried))  # pragma: no cover

    # --- contract --------------------------------------------------------------------------

    def _check_contract(self) -> None:
        s = self._session
        self.metadata: dict[str, str] = dict(s.get_modelmeta().custom_metadata_map)
        inputs, outputs = s.get_inputs(), s.get_outputs()
        name = self.path.name
        if len(inputs) != 1:
            listed = ", ".join(f"{i.name} {i.type} {i.shape}" for i in inputs)
            raise ModelError(
                f"{name}: expected one input (images [batch, S, S, 3]), found {len(inputs)}: "
                f"{listed}"
            )
        inp = inputs[0]
        dims = _dims(inp.shape)
        if inp.type not in _ELEMENT_TYPES:
            raise ModelError(
                f"{name}: input {inp.name!r} has type {inp.type}; cifarkit models take uint8 "
                "(raw pixels 0–255) or float32 scaled images"
            )
        self.input_name = inp.name
        self.input_type = _ELEMENT_TYPES[inp.type]
        self.fixed_batch = dims[0]

        if len(outputs) == 1:
            out = outputs[0]
        else:
            named = [o for o in outputs if o.name == "probabilities"]
            if not named:
                listed = ", ".join(f"{o.name} {o.shape}" for o in outputs)
                raise ModelError(
                    f"{name}: {len(outputs)} outputs and none is called 'probabilities' "
                    f"({listed}); expected one output probabilities [batch, n_classes]"
                )
            out = named[0]
        score = [o for o in outputs if o.name == contract.SCORE_OUTPUT and o is not out]
        if score:
            contract.check_score_output(_ELEMENT_TYPES.get(score[0].type, score[0].type),
                                        _dims(score[0].shape) or [], name)
        self.has_score = bool(score)
        odims = _dims(out.shape)
        if out.type not in ("tensor(float)", "tensor(float16)") or len(odims) != 2:
            raise ModelError(
                f"{name}: output {out.name!r} is {out.type} {out.shape}; expected float32 "
                "probabilities [batch, n_classes]"
            )
        self.output_name = out.name
        self.output_type = _ELEMENT_TYPES[out.type]
        self.score_type = _ELEMENT_TYPES[score[0].type] if score else None
        self.info = contract.describe(self.metadata, dims, odims[1], inp.type == "tensor(uint8)",
                                      name, output=out.name, has_score=self.has_score,
                                      outputs=[o.name for o in outputs])
        self.classes, self.n_classes = self.info.classes, self.info.n_classes
        self.image_size, self.input_kind = self.info.image_size, self.info.input_kind

    def _check_probabilities(self, probs: np.ndarray) -> None:
        contract.check_probabilities(probs, self.n_classes, self.path.name, self.output_name)
        self._checked_output = True

    # --- inference -------------------------------------------------------------------------

    def _prepare(self, batch: np.ndarray) -> np.ndarray:
        if self.input_kind == "uint8":
            return np.ascontiguousarray(batch)
        x = batch.astype(np.float32)
        if self.input_kind == "float01":
            x *= np.float32(1 / 255)
        return x.astype(self.input_type, copy=False)

    def _device(self) -> tuple[str, int]:
        if self.provider in GPU_PROVIDERS:
            return "cuda", int(self.provider_options.get("device_id", 0))
        return "cpu", 0

    def _run_bound(self, x: np.ndarray, names: list[str]) -> list[np.ndarray]:
        import onnxruntime as ort

        binding = self._session.io_binding()
        device, device_id = self._device()
        if device == "cpu" and not self._device_copy:
            # Zero-copy: onnxruntime reads the numpy buffer in place.
            binding.bind_cpu_input(self.input_name, x)
            for name in names:
                binding.bind_output(name, "cpu")
        else:
            n = x.shape[0]
            if n not in self._device_buffers:
                if len(self._device_buffers) > 8:  # odd last-chunk sizes: keep a few only
                    self._device_buffers.clear()
                shapes = {self.output_name: ((n, self.n_classes), self.output_type)}
                if self.has_score:
                    shapes[contract.SCORE_OUTPUT] = ((n,), self.score_type)
                self._device_buffers[n] = (
                    ort.OrtValue.ortvalue_from_shape_and_type(x.shape, x.dtype, device, device_id),
                    {k: ort.OrtValue.ortvalue_from_shape_and_type(shape, t, device, device_id)
                     for k, (shape, t) in shapes.items()},
                )
            x_dev, y_dev = self._device_buffers[n]
            x_dev.update_inplace(x)  # the one host→device copy
            binding.bind_ortvalue_input(self.input_name, x_dev)
            for name in names:
                binding.bind_ortvalue_output(name, y_dev[name])
        self._session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()  # in the order the outputs were bound

    def _infer(self, batch: np.ndarray, score: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """One ``session.run`` (or bound run) on ``batch``, no chunking: the probabilities,
        and the ``score`` output when ``score`` (fetched by name, checked on first use)."""
        if self._session is None:
            raise UsageError("this Classifier is closed")
        batch = contract.check_images(batch, self.image_size)
        n = batch.shape[0]
        if self.fixed_batch and n != self.fixed_batch:
            if n > self.fixed_batch:
                raise UsageError(
                    f"this model takes batches of exactly {self.fixed_batch}; got {n} "
                    "(predict_proba chunks for you)"
                )
            pad = np.zeros((self.fixed_batch - n, *batch.shape[1:]), np.uint8)
            batch = np.concatenate([batch, pad])
        x = self._prepare(batch)
        names = [self.output_name, *([contract.SCORE_OUTPUT] if score else [])]
        try:
            if self.io_binding:
                outs = self._run_bound(x, names)
            else:
                outs = self._session.run(names, {self.input_name: x})
        except Exception as exc:
            why = clean_log(str(exc))
            raise ModelError(f"{self.path.name}: inference failed: {why}") from None
        probs = np.asarray(outs[0][:n], dtype=np.float32)
        if not self._checked_output:
            self._check_probabilities(probs)
        if not score:
            return probs, None
        if not self._checked_score:
            contract.check_scores(outs[1][:n], n, self.path.name)
            self._checked_score = True
        return probs, np.asarray(outs[1][:n], dtype=np.float32)

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        """One ``session.run`` on ``batch`` (uint8 ``[n, 32, 32, 3]``), no chunking: for latency
        measurements. Returns float32 probabilities ``[n, n_classes]`` (the only output
        asked for)."""
        return self._infer(batch, False)[0]

    def run_outputs(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """One ``session.run`` on ``batch``: probabilities ``[n, n_classes]`` and the ``score``
        output ``[n]`` (float32; None when the model has none)."""
        return self._infer(batch, self.has_score)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Probabilities ``[N, n_classes]`` (float32) for uint8 images ``[N, 32, 32, 3]`` (or
        one image ``[32, 32, 3]``), run in chunks of ``batch_size``."""
        return self._predict(images, False)[0]

    def predict_scored(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``predict_proba`` and the ``score`` output ``[N]`` (None without one), each chunk
        from one ``session.run``."""
        return self._predict(images, self.has_score)

    def _predict(self, images: np.ndarray, score: bool) -> tuple[np.ndarray, np.ndarray | None]:
        images = contract.check_images(images, self.image_size)
        n = images.shape[0]
        out = np.empty((n, self.n_classes), dtype=np.float32)
        scores = np.empty(n, dtype=np.float32) if score else None
        tuner = self._tuner if self._tuner is not None and self._tuner.best is None else None
        if tuner is not None:
            tuner.request(n)
        start = 0
        while start < n:
            if tuner is not None and tuner.best is not None:
                tuner = None
            bs = tuner.next_size(n - start) if tuner is not None else self.batch_size
            chunk = images[start : start + bs]
            t0 = time.perf_counter()
            probs, s = self._infer(chunk, score)
            out[start : start + len(chunk)] = probs
            if scores is not None:
                scores[start : start + len(chunk)] = s
            if tuner is not None and len(chunk) == bs:
                tuner.record(bs, time.perf_counter() - t0)
            start += len(chunk)
        return out, scores

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class indices ``[N]`` (argmax of ``predict_proba``)."""
        return self.predict_proba(images).argmax(axis=1)

    # --- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        self._device_buffers.clear()
        self._session = None

    def __enter__(self) -> Classifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Classifier({os.fspath(self.path)!r}, provider={self.requested_provider!r}, "
            f"active={self.active_providers}, input_kind={self.input_kind!r}, "
            f"batch_size={self.batch_size if hasattr(self, '_batch_size') else None}, "
            f"threads={self.threads})"
        )


class _ChunkTuner:
    """Online choice of the chunk size. Candidates no larger than the largest request seen
    take turns (one untimed warm-up chunk each, then ``samples`` timed chunks); the best
    median seconds-per-image wins, and from then on that size is used."""

    def __init__(self, sizes: tuple[int, ...], samples: int = TUNING_SAMPLES) -> None:
        self.sizes = tuple(sorted(sizes))
        self.samples = samples
        self.times: dict[int, list[float]] = {s: [] for s in self.sizes}
        self.warm: set[int] = set()
        self.best: int | None = None
        self.max_request = 0
        self._turn = 0

    def _active(self) -> list[int]:
        return [s for s in self.sizes if s <= self.max_request]

    def request(self, n: int) -> None:
        self.max_request = max(self.max_request, n)

    def next_size(self, remaining: int) -> int:
        """The next chunk for a request with ``remaining`` images left."""
        fitting = [s for s in self._active() if len(self.times[s]) < self.samples
                   and s <= remaining]
        if not fitting:
            return remaining
        size = fitting[self._turn % len(fitting)]
        self._turn += 1
        return size

    def record(self, size: int, seconds: float) -> None:
        if size not in self.times:
            return
        if size not in self.warm:  # the first run at a new shape allocates; don't time it
            self.warm.add(size)
            return
        self.times[size].append(seconds / size)
        active = self._active()
        if active and all(len(self.times[s]) >= self.samples for s in active):
            rates = self.throughputs()
            self.best = max(active, key=lambda s: rates[s])

    def throughputs(self) -> dict[int, float]:
        import statistics

        return {s: 1 / statistics.median(t) for s, t in self.times.items() if t}


# --- bare CPU sessions: export's checks on graphs held in memory --------------------------


def ort_levels() -> dict[str, Any]:
    """onnxruntime's graph optimization levels by name, lowest first."""
    import onnxruntime as ort

    g = ort.GraphOptimizationLevel
    return {
        "disable_all": g.ORT_DISABLE_ALL,
        "basic": g.ORT_ENABLE_BASIC,
        "extended": g.ORT_ENABLE_EXTENDED,
        "all": g.ORT_ENABLE_ALL,
    }


def _is_ort_format(model: bytes | str | os.PathLike[str]) -> bool:
    if isinstance(model, bytes):
        return model[4:8] == b"ORTM"  # the ORT flatbuffer's file identifier
    return Path(model).suffix.lower() == ".ort"


def cpu_session(model: bytes | str | os.PathLike[str], level: Any = None,
                threads: int = 0) -> Any:
    """A bare onnxruntime CPU session on serialized bytes or a file, ONNX or ORT format: the
    one way cifarkit opens one. ``Classifier`` is the checked, batched way to *use* a model;
    this is for export, which checks graphs still in memory at chosen optimization levels
    (``level``: a value of ``ort_levels()``; None: onnxruntime's default) and times them with
    ``threads`` intra-op threads (0: onnxruntime's default). onnxruntime's own errors
    propagate: the caller says what was being checked."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if level is not None:
        opts.graph_optimization_level = level
    if threads:
        opts.intra_op_num_threads = threads
    if _is_ort_format(model):
        opts.add_session_config_entry("session.load_model_format", "ORT")
    source = model if isinstance(model, bytes) else os.fspath(model)
    return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])


def session_proba(session: Any, images: np.ndarray, batch_size: int = 250) -> np.ndarray:
    """Float32 probabilities of a ``cpu_session`` for uint8 images, ``batch_size`` at a time."""
    out = [session.run([contract.OUTPUT_NAME], {contract.INPUT_NAME: images[s:s + batch_size]})[0]
           for s in range(0, len(images), batch_size)]
    if out:
        return np.concatenate(out).astype(np.float32)
    width = session.get_outputs()[0].shape[-1]
    return np.zeros((0, width if isinstance(width, int) else 0), np.float32)


# --- the backend seam: onnxruntime as one of the registered backends ----------------------


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    module = "onnxruntime"
    package = "onnxruntime"  # onnxruntime-gpu provides the same module

    def version(self) -> str | None:
        try:
            import onnxruntime

            return str(onnxruntime.__version__)
        except Exception:
            return None

    def open(self, path: str | os.PathLike[str], *, threads: int | None = None,
             provider: str = "cpu", io_binding: bool = False) -> OrtModel:
        self.require()
        clf = Classifier(path, provider, threads=threads, io_binding=io_binding)
        return OrtModel(self, clf)

    def _open(self, path: Path, threads: int) -> RuntimeModel:  # pragma: no cover - see open
        return self.open(path, threads=threads)


class OrtModel(RuntimeModel):
    """A ``Classifier`` behind the runtime seam (``classifier`` stays reachable: the bench
    reads its providers and tuned chunk size)."""

    def __init__(self, runtime: Runtime, clf: Any) -> None:
        super().__init__(runtime, clf.path, clf.threads)
        self.classifier = clf
        self.describe(clf.info)
        self.provider = clf.provider
        self.active_providers = list(clf.active_providers)

    def _run(self, batch: np.ndarray, score: bool) -> tuple[Any, Any]:  # pragma: no cover
        return self.classifier._infer(batch, score)  # the methods below call it directly

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        return self.classifier.run_batch(batch)  # checks the contract and raises ModelError

    def run_outputs(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        return self.classifier.run_outputs(batch)

    def predict_proba(self, images: np.ndarray, chunk: int | None = None) -> np.ndarray:
        if chunk is not None:
            self.classifier.batch_size = chunk
        return self.classifier.predict_proba(images)  # its online-tuned chunk size

    def predict_scored(self, images: np.ndarray,
                       chunk: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        if chunk is not None:
            self.classifier.batch_size = chunk
        return self.classifier.predict_scored(images)

    def close(self) -> None:
        self.classifier.close()
