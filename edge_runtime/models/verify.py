"""A manifest checked against its model before anything runs.

The model file is opened (no warm-up, no inference) only to read its tensor
descriptions; the manifest's decoder is then bound to the outputs, which refuses a
decoder whose expected outputs (names, ranks, sizes) the model does not have, and a
plugin that cannot be imported or called. Used by ``check``, ``models verify`` and
``models info``; the daemon does the same when it builds a pipeline.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge_runtime.errors import EdgeRuntimeError

if TYPE_CHECKING:
    from edge_runtime.models.decoders.base import Decoder
    from edge_runtime.models.model import Model


@dataclass(frozen=True, slots=True)
class ModelCheck:
    """What checking one model found: the loaded model and its bound decoder."""

    model: Model
    decoder: Decoder | None
    quantization: str


def check_model(name_or_path: str | os.PathLike[str]) -> ModelCheck:
    """Load ``name_or_path``'s manifest and tensors and bind its decoder; raises on misfit.

    The caller closes ``result.model``.
    """
    from edge_runtime.models.model import load_model
    from edge_runtime.models.quantization import file_quantization
    from edge_runtime.pipelines.postprocess import check_outputs

    model = load_model(name_or_path, num_threads=1, warmup_runs=0)
    try:
        decoder = None
        if model.manifest is not None:
            decoder = check_outputs(model.manifest, model.inputs, model.outputs)
        return ModelCheck(model, decoder, file_quantization(model))
    except BaseException:
        model.close()
        raise


def check_config_models(config: Any) -> int:
    """Check every pipeline's model of a loaded config; errors name ``pipelines[i].model``.

    Returns how many models were checked.
    """
    checked = 0
    for i, pipe in enumerate(config.pipelines):
        if pipe.model is None:
            continue
        name = pipe.model
        if "/" in name or name.endswith((".onnx", ".tflite", ".toml")):
            name = str(config.resolve(name))
        try:
            result = check_model(name)
        except EdgeRuntimeError as exc:
            raise type(exc)(f"pipelines[{i}].model {pipe.model!r}: {exc.message}",
                            hint=exc.hint) from exc
        result.model.close()
        checked += 1
    return checked
