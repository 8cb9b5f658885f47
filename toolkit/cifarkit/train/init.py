"""``--init MODEL``: start training from a trained cifarkit model, with no network.

The source may be a run folder (its ``model.keras``), a ``.keras`` file, an fp32 ``.onnx``
file, or a shipped model's name (``exported/<name>/model.fp32.onnx``). Every layer of the new
model whose name and weight shapes match the source's is loaded; the classifier head is
always rebuilt (new classes), and layers whose shapes depend on the image size (a ``Dense``
after ``Flatten``) start fresh when the size differs. Each skipped layer is reported.

ONNX sources carry no Keras file, so their weights are rebuilt from the graph: tf2onnx keeps
the Keras layer names in the initializer names, and a BatchNormalization that tf2onnx folded
into its convolution comes back as that convolution's kernel plus a BN with identity
statistics (mean 0, variance 1) and the folded bias as its offset. The rebuilt Keras model
gives the ONNX file's probabilities (checked by the tests), so fine-tuning starts from
exactly the shipped model. Supported for the fastnet family (the shipped defaults).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit.errors import ModelError

#: Layers that map features to classes: rebuilt for the new task, never loaded.
HEAD_LAYERS = frozenset({"head", "predictions"})
_LAYER = re.compile(r"^[^/]+_\d+/(?P<layer>[^/]+?)_\d+/")


@dataclass
class InitReport:
    source: str
    kind: str  # "keras" or "onnx"
    architecture: str | None
    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # layer → why


def resolve_init(spec: str | os.PathLike[str]) -> tuple[Path, str]:
    """``(file, kind)`` for a run folder, a .keras/.onnx file or a shipped model's name."""
    path = Path(spec)
    if path.is_dir() and (path / "model.keras").is_file():
        return path / "model.keras", "keras"
    if path.is_dir() and (path / "model.fp32.onnx").is_file():
        return path / "model.fp32.onnx", "onnx"
    if path.is_file() and path.suffix in (".keras", ".onnx"):
        return path, path.suffix[1:]
    from cifarkit.backends.catalog import exported_dir

    shipped = exported_dir() / str(spec).partition(":")[0] / "model.fp32.onnx"
    if shipped.is_file():
        return shipped, "onnx"
    raise ModelError(f"--init {spec}: not a run folder (with model.keras), a .keras or "
                     f"fp32 .onnx file, or a shipped model in {exported_dir()}")


def _onnx_architecture(path: Path) -> str | None:
    import onnx

    proto = onnx.load(os.fspath(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}.get("architecture")


def onnx_layer_weights(path: Path) -> dict[str, list[np.ndarray]]:
    """Keras-layout weights per layer name, rebuilt from a tf2onnx graph (see module doc)."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(os.fspath(path), load_external_data=False)
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    weights: dict[str, list[np.ndarray]] = {}
    scales: dict[str, np.ndarray] = {}  # BN layer → 1/sqrt(var + eps) of an unfolded BN
    for node in proto.graph.node:
        params = [(m.group("layer"), inits[x]) for x in node.input
                  if x in inits and (m := _LAYER.match(x))]
        bn = _LAYER.match(node.name + "/")
        if bn and "_bn" in bn.group("layer") and "/batchnorm/" in node.name:
            _unfolded_bn(weights, scales, bn.group("layer"), node, inits)
        elif node.op_type == "Conv" and params:
            (conv, kernel), *bias = params
            weights[conv] = [kernel.transpose(2, 3, 1, 0)]  # OIHW → HWIO
            if bias:
                _bias_layer(weights, conv, *bias[0])
        elif node.op_type == "MatMul" and params:
            weights[params[0][0]] = [params[0][1]]
    return weights


def _unfolded_bn(weights: dict[str, list[np.ndarray]], scales: dict[str, np.ndarray],
                 layer: str, node: Any, inits: dict[str, np.ndarray]) -> None:
    """A BN left as ``x * s + c`` (after a pool, say): variance ``1/s² - eps``, mean 0."""
    value = next((inits[x].reshape(-1) for x in node.input if x in inits), None)
    if value is None:
        return
    if node.op_type == "Mul":
        scales[layer] = value
    elif node.op_type == "Add" and layer in scales:
        eps = 1e-12  # fastnet's BN epsilon: the variance is recovered to within it
        var = 1.0 / np.square(scales.pop(layer).astype(np.float64)) - eps
        weights[layer] = [value, np.zeros_like(value), var.astype(value.dtype)]


def _bias_layer(weights: dict[str, list[np.ndarray]], conv: str, layer: str,
                bias: np.ndarray) -> None:
    if layer == conv:  # the convolution's own bias
        weights[conv].append(bias)
    elif "_bn" in layer:  # a BatchNormalization folded into the convolution
        weights[layer] = [bias, np.zeros_like(bias), np.ones_like(bias)]
    else:  # a separate bias layer (fastnet's whiten_bias)
        weights[layer] = [bias]


def _keras_layer_weights(path: Path) -> tuple[dict[str, list[np.ndarray]], str]:
    import keras

    import cifarkit.models.layers  # noqa: F401 - registers the custom layers for loading

    model = keras.saving.load_model(path, compile=False)
    return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}, \
        model.name


def load_init(model: Any, spec: str | os.PathLike[str], keep_head: bool = False) -> InitReport:
    """Load the source's weights into ``model`` layer by layer (see module doc)."""
    path, kind = resolve_init(spec)
    if kind == "onnx":
        source, arch = onnx_layer_weights(path), _onnx_architecture(path)
    else:
        source, arch = _keras_layer_weights(path)
    report = InitReport(str(path), kind, arch)
    for layer in model.layers:
        if not layer.weights:
            continue
        why = _why_not(layer, source.get(layer.name), keep_head)
        if why:
            report.skipped[layer.name] = why
            continue
        layer.set_weights(source[layer.name])
        report.loaded.append(layer.name)
    if not report.loaded:
        raise ModelError(f"--init {spec}: no layer of {model.name} matches {path} "
                         f"(a {arch or 'different'} model); use a model of the same family")
    return report


def _why_not(layer: Any, weights: list[np.ndarray] | None, keep_head: bool) -> str | None:
    if layer.name in HEAD_LAYERS and not keep_head:
        return "head: rebuilt for the new classes"
    if weights is None:
        return "not in the source"
    want = [tuple(w.shape) for w in layer.get_weights()]
    got = [tuple(w.shape) for w in weights]
    if want != got:
        return f"shapes differ (source {got}, here {want})"
    return None
