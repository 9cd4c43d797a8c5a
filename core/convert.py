"""Named conversion paths: torch -> ONNX (dynamo or legacy exporter), TF -> ONNX (tf2onnx).

Each path is a value (:class:`Conversion`) looked up by name, so callers and tests can inject
their own with :func:`register_conversion`, the way TVM names its pass pipelines.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError, ConversionError

if TYPE_CHECKING:
    from .model import ModelHandle

logger = logging.getLogger(__name__)

# torch's dynamo exporter writes opset 18 and up; the TorchScript-based exporter and tf2onnx 1.17
# are used at 17, the newest opset both convert every model of the test suite at.
DYNAMO_OPSET = 18
ONNX_OPSET = 17


@dataclasses.dataclass(frozen=True, kw_only=True)
class Conversion:
    """One way to turn a model into another format."""

    name: str
    source: str  # framework the path starts from
    target: str  # format it produces
    fn: Callable[[ModelHandle, Path, bool], Path]

    def convert(self, model: ModelHandle, out: Path, *, dynamic_batch: bool) -> Path:
        """Run the conversion; any failure becomes a ConversionError naming the path."""
        logger.info("converting %s with %s", model.name, self.name)
        try:
            return self.fn(model, out, dynamic_batch)
        except ConversionError:
            raise
        except Exception as exc:
            raise ConversionError(f"{self.name}: {type(exc).__name__}: {exc}") from exc


_CONVERSIONS: dict[str, Conversion] = {}


def register_conversion(conversion: Conversion) -> None:
    """Add or replace a named conversion path."""
    _CONVERSIONS[conversion.name] = conversion


def get_conversion(name: str) -> Conversion:
    """Look up a conversion path by name."""
    try:
        return _CONVERSIONS[name]
    except KeyError:
        raise ConfigError(f"unknown conversion {name!r}; known: {', '.join(sorted(_CONVERSIONS))}") from None


def _torch_dynamo_onnx(model: ModelHandle, out: Path, dynamic_batch: bool) -> Path:
    import torch

    ep = model.exported_program(dynamic_batch=dynamic_batch)  # type: ignore[attr-defined]
    onnx_program = torch.onnx.export(
        ep, (), dynamo=True, input_names=[s.name for s in model.inputs],
        output_names=list(model.output_names), opset_version=DYNAMO_OPSET,
        optimize=True, verbose=False,
    )
    if onnx_program is None:
        raise ConversionError("torch.onnx.export returned no program")
    onnx_program.save(str(out))
    return out


def _torch_legacy_onnx(model: ModelHandle, out: Path, dynamic_batch: bool) -> Path:
    """The TorchScript-based exporter, with ``dynamic_axes`` named after the model's dims.

    Traced at batch 2 for a dynamic batch and at sizes >= 2 for the named dims
    (:meth:`ModelHandle.trace_dims`): a size-1 dim would be baked in.
    """
    import torch

    dynamic_batch = dynamic_batch and model.batched
    batch = 2 if dynamic_batch else None
    dims = model.trace_dims(batch)
    feeds = model.example_feeds
    if dynamic_batch or dims:
        feeds = model.random_feeds(batch=batch, seed=0, dims=dims)
    args = tuple(torch.from_numpy(feeds[s.name]) for s in model.inputs)
    axes: dict[str, dict[int, str]] = {
        s.name: a for s, a in zip(model.inputs, model.dynamic_axes(dynamic_batch=dynamic_batch)) if a}
    if dynamic_batch:
        axes.update({n: {0: "batch"} for n in model.output_names})
    torch.onnx.export(model.module_copy(), args, str(out), dynamo=False,  # type: ignore[attr-defined]
                      input_names=[s.name for s in model.inputs],
                      output_names=list(model.output_names), dynamic_axes=axes or None,
                      opset_version=ONNX_OPSET)
    return out


def _tf2onnx(model: ModelHandle, out: Path, dynamic_batch: bool) -> Path:
    # tf2onnx runs in its own process: it imports TF graph internals that do not mix with torch
    # in one process, and a crash there must not take down the caller.
    saved = model.saved_model_path()  # type: ignore[attr-defined]
    cmd = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved),
           "--signature_def", model.signature_key,  # type: ignore[attr-defined]
           "--output", str(out), "--opset", str(ONNX_OPSET)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0 or not out.exists():
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise ConversionError(f"tf2onnx failed (exit {proc.returncode}): {tail}")
    _rename_onnx_io(out, model)
    return out


def _rename_onnx_io(path: Path, model: ModelHandle) -> None:
    """Give a converted ONNX graph the model's own input and output names, in its order."""
    import onnx

    proto = onnx.load(str(path))
    graph = proto.graph
    init = {i.name for i in graph.initializer}
    graph_inputs = [i for i in graph.input if i.name not in init]
    mapping: dict[str, str] = {}
    by_name = {s.name: s for s in model.inputs}
    for vi in graph_inputs:
        base = vi.name.split(":")[0]
        if base in by_name and base != vi.name:
            mapping[vi.name] = base
    outs = list(graph.output)
    names = list(model.output_names)
    if len(outs) == len(names):
        # tf2onnx keeps the signature's output keys, possibly with a ":0" suffix.
        for vi in outs:
            base = vi.name.split(":")[0]
            if base in names and base != vi.name:
                mapping[vi.name] = base
    if not mapping:
        return
    for vi in list(graph.input) + list(graph.output):
        if vi.name in mapping:
            vi.name = mapping[vi.name]
    for node in graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]
    onnx.save(proto, str(path))


register_conversion(Conversion(name="torch-dynamo-onnx", source="torch", target="onnx",
                               fn=_torch_dynamo_onnx))
register_conversion(Conversion(name="torch-legacy-onnx", source="torch", target="onnx",
                               fn=_torch_legacy_onnx))
register_conversion(Conversion(name="tf2onnx", source="tensorflow", target="onnx", fn=_tf2onnx))
