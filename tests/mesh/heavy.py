"""Models for the offloading tests. ``Slowed``: a real engine made slower, as a Pi-class
CPU beside a fast peer. ``write_heavy``: a model heavy enough to be worth offloading,
built on the fly (no download): a stack
of 3x3 convolutions on a 96x96 RGB frame, then a 10-class head. Its weights are seeded,
so every node that builds it builds the same file (same sha256, same answers).

``write_heavy(folder, name, convs=...)`` writes ``NAME.onnx`` and its manifest
``NAME.toml`` (an image classifier, so a camera pipeline can run it) and returns the
manifest's path. About 1 GMAC at the default size: tens of milliseconds per frame on one
core of the test machine, more under a CPU quota (a Pi-class node).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_runtime.models.backend import Backend


class Slowed(Backend):
    """The real engine plus ``extra_s`` per run: this node's CPU is a Pi's."""

    def __init__(self, inner: Backend, extra_s: float) -> None:
        self.inner, self.extra_s, self.name = inner, extra_s, inner.name
        self._inputs, self._outputs = inner.inputs, inner.outputs

    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        threading.Event().wait(self.extra_s)
        return self.inner.run(arrays)

    @classmethod
    def engine_version(cls) -> str:
        return "slowed"

    def close(self) -> None:
        self.inner.close()


def write_heavy(folder: Path, name: str = "heavy-test", *, convs: int = 6, channels: int = 48,
                size: int = 96) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1234)
    nodes, inits = [], []
    prev, prev_c = "input", 3
    for i in range(convs):
        w = (rng.standard_normal((channels, prev_c, 3, 3)) * (1.0 / np.sqrt(9 * prev_c))
             ).astype(np.float32)
        b = np.zeros(channels, np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes.append(helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [f"c{i}"],
                                      pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        prev, prev_c = f"r{i}", channels
    nodes.append(helper.make_node("GlobalAveragePool", [prev], ["pooled"]))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["flat"]))
    head = (rng.standard_normal((channels, 10)) * 0.5).astype(np.float32)
    inits.append(numpy_helper.from_array(head, "head"))
    nodes.append(helper.make_node("MatMul", ["flat", "head"], ["logits"]))
    nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=1))
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = folder / f"{name}.onnx"
    onnx.save(model, str(onnx_path))
    digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    manifest = folder / f"{name}.toml"
    manifest.write_text(f'''name = "{name}"
file = "{onnx_path.name}"
sha256 = "{digest}"
task = "classification"
description = "A heavy test classifier: {convs} 3x3 convs, {channels} channels, {size}x{size} RGB."
version = "1"
labels = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]

[preprocessing]
type = "image"
size = [{size}, {size}]
layout = "NCHW"
color = "RGB"
resize = "stretch"
scale = 0.00392156862745098

[postprocessing]
type = "classes"
softmax = false
top_k = 1
''')
    return manifest
