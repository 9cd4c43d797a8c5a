"""``shim.txt``, the manifest C reads (``ys_model_open``): written for a model, its identity read back."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yellowstone.errors import CompilationError

from .signatures import SHIM_BACKENDS

if TYPE_CHECKING:
    from yellowstone import BoostConfig
    from yellowstone.model import ModelHandle

MANIFEST = "shim.txt"
SHIM_FORMAT = 1
IDENTITY = ("backend", "model", "hardware", "backend_version", "boost_precision", "yellowstone")
MODEL_FILES = {"openvino": "model.xml", "onnxruntime": "model.onnx"}
# The core's precision -> OpenVINO's INFERENCE_PRECISION_HINT (int8 IR runs with an f32 hint).
SHIM_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}
ORT_OPTIMIZATION = 99  # ORT_ENABLE_ALL, as the core's onnxruntime backend opens its sessions


@dataclasses.dataclass(frozen=True)
class _Port:
    names: frozenset[str]
    dtype: str
    dims: tuple[int, ...]


def _ov_ports(path: Path) -> tuple[list[_Port], list[_Port]]:
    import openvino as ov

    def port(p: Any) -> _Port:
        name = p.get_element_type().to_dtype().name  # numpy dtype of the OpenVINO element type
        dims = tuple(d.get_length() if d.is_static else -1 for d in p.get_partial_shape())
        return _Port(frozenset(p.get_names()), "bool" if name == "bool_" else name, dims)

    model = ov.Core().read_model(str(path))
    return [port(p) for p in model.inputs], [port(p) for p in model.outputs]


def _onnx_ports(path: Path) -> tuple[list[_Port], list[_Port]]:
    """The ONNX graph's inputs (initializers left out: ONNX Runtime's order) and outputs."""
    import numpy as np
    import onnx
    from onnx import helper

    graph = onnx.load(str(path), load_external_data=False).graph
    init = {i.name for i in graph.initializer}

    def port(vi: Any) -> _Port:
        t = vi.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)).name
        return _Port(frozenset({vi.name, vi.name.split(":")[0]}), dtype, dims)

    return [port(v) for v in graph.input if v.name not in init], [port(v) for v in graph.output]


def ort_session(cfg: BoostConfig) -> tuple[int, dict[str, str]]:
    """(intra-op threads, session config entries) as the core's onnxruntime backend sets them."""
    opts = dict(cfg.options.get("onnxruntime", {}))
    providers = list(opts.get("providers") or ["CPUExecutionProvider"])
    if providers != ["CPUExecutionProvider"]:
        raise CompilationError(f"the shim runs ONNX Runtime's CPU provider only, not {providers}")
    entries = {"session.intra_op.allow_spinning": "0"} if cfg.workers > 1 else {}
    entries.update({str(k): str(v) for k, v in dict(opts.get("session_config", {})).items()})
    bad = [k for k, v in entries.items() if not k or any(c.isspace() for c in k) or "\n" in v]
    if bad:
        raise CompilationError(f"ONNX Runtime session config keys {bad} cannot go in {MANIFEST}")
    return cfg.effective_threads, entries


def _backend_lines(out: Path, rel: Path, backend: str, cfg: BoostConfig,
                   precision: str) -> tuple[list[str], list[_Port], list[_Port]]:
    """The backend's own manifest lines, and its model's input and output ports."""
    from ..native import c_library

    if backend == "openvino":
        ins, outs = _ov_ports(out / rel)
        return [f"xml {rel}", f"bin {rel.with_suffix('.bin')}", f"precision {SHIM_PRECISION[precision]}",
                f"ovlib {c_library(backend)}"], ins, outs
    if backend == "onnxruntime":
        ins, outs = _onnx_ports(out / rel)
        threads, entries = ort_session(cfg)
        return [f"onnx {rel}", f"precision {precision}", f"ortlib {c_library(backend)}",
                f"ort_threads {threads}", f"ort_optimization {ORT_OPTIMIZATION}",
                *(f"ort_config {k} {v}" for k, v in entries.items())], ins, outs
    raise CompilationError(f"the shim runs {' and '.join(SHIM_BACKENDS)}, not {backend}")


def _port_lines(kind: str, ports: list[_Port], infos: Mapping[str, Any], backend: str,
                signature: str) -> list[str]:
    """One ``input``/``output`` line per signature tensor, matched to the backend's port."""
    from tensorflow.python.framework import dtypes

    keys = sorted(infos)
    if len(ports) != len(keys):
        raise CompilationError(
            f"{backend} model has {len(ports)} {kind}s, signature {signature!r} has {len(keys)}"
        )
    rows = []
    for pos, key in enumerate(keys):
        idx = next((i for i, p in enumerate(ports) if key in p.names), pos)
        want = dtypes.as_dtype(infos[key].dtype).name
        if ports[idx].dtype != want:
            raise CompilationError(f"{kind} {key!r}: {backend} has {ports[idx].dtype}, signature has {want}")
        if any(c.isspace() for c in key + infos[key].name):
            raise CompilationError(f"{kind} name {key!r} has white space")
        dims = ports[idx].dims
        tensor = infos[key].name or "-"
        rows.append(f"{kind} {key} {tensor} {want} {idx} {len(dims)} " + " ".join(map(str, dims)))
    return rows


def write_shim_manifest(out: Path, model_file: str | os.PathLike[str], *, backend: str, signature: str,
                        sig: Any, cfg: BoostConfig, identity: Mapping[str, str]) -> Path:
    """Write ``out/shim.txt`` for ``backend``'s model at ``out/model_file`` serving SignatureDef ``sig``.

    Lines: ``ys-shim 1``, ``backend openvino|onnxruntime``, ``signature KEY``, the :data:`IDENTITY`
    lines (what the directory was built from; C ignores them), the backend's own lines and one
    ``input|output NAME TENSOR DTYPE INDEX RANK DIMS...`` line per tensor (INDEX: the backend's
    port; dynamic dims are -1). OpenVINO: ``xml``, ``bin`` (relative), ``precision``
    (INFERENCE_PRECISION_HINT), ``ovlib``. ONNX Runtime: ``onnx``, ``ortlib``, ``ort_threads``,
    ``ort_optimization`` and ``ort_config KEY VALUE`` (its session options, as the core sets them).
    """
    precision = identity.get("boost_precision", "fp32")
    own, ins, outs = _backend_lines(out, Path(model_file), backend, cfg, precision)
    lines = [f"ys-shim {SHIM_FORMAT}", f"backend {backend}", f"signature {signature}",
             *(f"{k} {identity[k]}" for k in IDENTITY[1:] if identity.get(k)), *own,
             *_port_lines("input", ins, sig.inputs, backend, signature),
             *_port_lines("output", outs, sig.outputs, backend, signature)]
    (out / MANIFEST).write_text("\n".join(lines) + "\n")
    return out / MANIFEST


def read_identity(shim_dir: str | os.PathLike[str]) -> dict[str, str]:
    """The ``IDENTITY`` lines of a shim directory's manifest (``backend`` defaults to openvino)."""
    found = {"backend": SHIM_BACKENDS[0]}
    for line in (Path(shim_dir) / MANIFEST).read_text().splitlines():
        key, _, value = line.partition(" ")
        if key in IDENTITY:
            found[key] = value.strip()
    return found


def identity_of(handle: ModelHandle, cfg: BoostConfig, backend: str) -> dict[str, str]:
    """What a shim directory for ``backend`` built here and now would record.

    ``model`` is the core's fingerprint, which covers the SavedModel's own files only (not a
    shipped ``yellowstone/`` directory beside them).
    """
    import yellowstone
    from yellowstone.backends import get_backend
    from yellowstone.hardware import detect

    return {"backend": backend, "model": handle.fingerprint, "hardware": detect().fingerprint,
            "backend_version": get_backend(backend).version(), "boost_precision": cfg.precision,
            "yellowstone": yellowstone.__version__}
