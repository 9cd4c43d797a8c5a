"""Shim artifacts: boost a SavedModel signature with the core and write the shim's manifest.

Layout, one directory per boosted signature (``<version>/yellowstone/<signature>/`` when shipped
next to the SavedModel)::

    shim.txt                      the shim's manifest (read by C: ys_model_open)
    yellowstone.json, artifacts/  what ``BoostedModel.save`` wrote (OpenVINO IR under dynamic/)
    model.xml, model.bin          or IR converted here (policy "always", see below)

``shim.txt`` is line-based: ``ys-shim 1``, ``xml PATH``, ``bin PATH``, ``precision f32``,
``signature KEY``, ``ovlib PATH`` and one ``input|output NAME TENSOR DTYPE OV_INDEX RANK DIMS...``
line per tensor (dynamic dims are -1).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from yellowstone.errors import CompilationError, ModelLoadError, ValidationError

logger = logging.getLogger(__name__)

MANIFEST = "shim.txt"
SHIPPED_DIR = "yellowstone"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
SHIM_DTYPES = {
    "float32",
    "float64",
    "float16",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "bool",
}


def read_meta_graph(saved_model_dir: str | os.PathLike[str], tags: Sequence[str] = ("serve",)) -> Any:
    """The MetaGraphDef tagged ``serve`` of a SavedModel (its SignatureDefs, as TF Serving reads)."""
    from tensorflow.core.protobuf import saved_model_pb2

    root = Path(saved_model_dir)
    sm = saved_model_pb2.SavedModel()
    if (root / "saved_model.pb").exists():
        sm.ParseFromString((root / "saved_model.pb").read_bytes())
    elif (root / "saved_model.pbtxt").exists():
        from google.protobuf import text_format

        text_format.Parse((root / "saved_model.pbtxt").read_text(), sm)
    else:
        raise ModelLoadError(f"{root} has no saved_model.pb")
    for mg in sm.meta_graphs:
        if set(tags) <= set(mg.meta_info_def.tags):
            return mg
    raise ModelLoadError(f"{root}: no MetaGraphDef with tags {list(tags)}")


def boostable(sig: Any) -> bool:
    """True when a SignatureDef is a predict signature over numeric tensors (what the shim runs)."""
    from tensorflow.python.framework import dtypes

    if sig.method_name and sig.method_name != PREDICT_METHOD:
        return False
    for info in list(sig.inputs.values()) + list(sig.outputs.values()):
        if info.dtype == 0 or dtypes.as_dtype(info.dtype).name not in SHIM_DTYPES:
            return False
    return bool(sig.inputs) and bool(sig.outputs)


def _ov_element_name(ov_type: Any) -> str:
    name = ov_type.to_dtype().name  # numpy dtype of the OpenVINO element type
    return "bool" if name == "bool_" else name


def write_manifest(out: Path, *, xml: str, signature: str, sig: Any, precision: str = "f32") -> Path:
    """Write ``shim.txt`` for the IR at ``out/xml`` serving SignatureDef ``sig``."""
    import openvino as ov
    from tensorflow.python.framework import dtypes

    from .native import openvino_c_library

    model = ov.Core().read_model(str(out / xml))
    keys_in, keys_out = sorted(sig.inputs), sorted(sig.outputs)
    lines = [
        "ys-shim 1",
        f"xml {xml}",
        f"bin {Path(xml).with_suffix('.bin')}",
        f"precision {precision}",
        f"signature {signature}",
    ]
    try:
        lines.append(f"ovlib {openvino_c_library()}")
    except Exception:  # noqa: BLE001 - the interposer can also take YS_OPENVINO_C_LIB
        pass

    def port_lines(kind: str, ports: Any, keys: list[str], infos: Mapping[str, Any]) -> list[str]:
        if len(ports) != len(keys):
            raise CompilationError(f"IR has {len(ports)} {kind}s, signature {signature!r} has {len(keys)}")
        rows = []
        for pos, key in enumerate(keys):
            idx = next((i for i, p in enumerate(ports) if key in p.get_names()), pos)
            port = ports[idx]
            dims = [d.get_length() if d.is_static else -1 for d in port.get_partial_shape()]
            dtype = _ov_element_name(port.get_element_type())
            want = dtypes.as_dtype(infos[key].dtype).name
            if dtype != want:
                raise CompilationError(f"{kind} {key!r}: IR has {dtype}, signature has {want}")
            if any(c.isspace() for c in key + infos[key].name):
                raise CompilationError(f"{kind} name {key!r} has white space")
            rows.append(
                f"{kind} {key} {infos[key].name or '-'} {dtype} {idx} {len(dims)} "
                + " ".join(str(d) for d in dims)
            )
        return rows

    lines += port_lines("input", model.inputs, keys_in, sig.inputs)
    lines += port_lines("output", model.outputs, keys_out, sig.outputs)
    (out / MANIFEST).write_text("\n".join(lines) + "\n")
    return out / MANIFEST


def _convert_here(saved_model_dir: Path, signature: str, out: Path) -> str:
    """Convert one signature to OpenVINO IR directly (used when the core chose another backend)."""
    import openvino as ov
    import tensorflow as tf

    loaded = tf.saved_model.load(str(saved_model_dir))
    fn = loaded.signatures[signature]
    try:
        model = ov.convert_model(fn)
        ov.save_model(model, str(out / "model.xml"), compress_to_fp16=False)
    except Exception as exc:
        raise CompilationError(f"openvino could not convert signature {signature!r}: {exc}") from exc
    return "model.xml"


def prepare_signature(
    saved_model_dir: str | os.PathLike[str],
    signature: str,
    out_dir: str | os.PathLike[str],
    *,
    policy: str = "always",
    boost_options: Mapping[str, Any] | None = None,
) -> Path | None:
    """Boost one signature and write a shim artifact directory; None when TF should serve it.

    policy ``auto``: the shim serves only when the core chose OpenVINO (its benchmark says the
    OpenVINO path is fastest). ``always``: the shim serves whenever OpenVINO converts and the
    result validates; the core's Python-level benchmark does not measure the C path the shim
    runs, so this is the server's default.
    """
    import yellowstone

    src = Path(saved_model_dir)
    out = Path(out_dir)
    sig = read_meta_graph(src).signature_def.get(signature)
    if sig is None or not boostable(sig):
        return None
    options = {"backends": "openvino", "validation_rounds": 1, "time_budget_s": 0.2}
    options.update(boost_options or {})
    handle = yellowstone.load_model(str(src), signature=signature)
    boosted = yellowstone.boost(handle, **options)
    if out.exists():
        shutil.rmtree(out)
    if boosted.backend == "openvino":
        boosted.save(out)
        xml = "artifacts/dynamic/model.xml"
        if not (out / xml).exists():  # static buckets: serve the first one
            found = sorted(out.glob("artifacts/*/model.xml"))
            if not found:
                raise CompilationError(f"{out}: the saved artifact has no OpenVINO IR")
            xml = str(found[0].relative_to(out))
    elif policy == "always":
        logger.info(
            "%s[%s]: the core chose %s (%s); converting to OpenVINO for the shim anyway",
            src,
            signature,
            boosted.backend,
            boosted.report.fallback_reason or "fastest in Python",
        )
        out.mkdir(parents=True)
        xml = _convert_here(src, signature, out)
    else:
        logger.info(
            "%s[%s]: the core chose %s; TensorFlow serves this signature", src, signature, boosted.backend
        )
        return None
    write_manifest(out, xml=xml, signature=signature, sig=sig)
    return out


def prepare(
    saved_model_dir: str | os.PathLike[str],
    out_root: str | os.PathLike[str] | None = None,
    *,
    signatures: Sequence[str] = ("serving_default",),
    policy: str = "always",
    boost_options: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write shim artifacts for ``signatures`` under ``out_root`` (default ``<dir>/yellowstone``)."""
    root = Path(out_root) if out_root else Path(saved_model_dir) / SHIPPED_DIR
    done = {}
    for key in signatures:
        path = prepare_signature(saved_model_dir, key, root / key, policy=policy, boost_options=boost_options)
        if path is not None:
            done[key] = path
    return done


def random_feeds(
    inputs: Sequence[tuple[str, str, str, tuple[int, ...]]], batch: int = 2, seed: int | None = None
) -> dict[str, np.ndarray]:
    """Fresh random (never all-zero) feeds for the shim's input list."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, _, dtype, shape in inputs:
        dims = [batch if (i == 0 and d == -1) else (d if d >= 0 else 3) for i, d in enumerate(shape)]
        dt = np.dtype(dtype)
        if dt.kind == "f":
            arr = rng.standard_normal(dims).astype(dt)
        elif dt.kind == "b":
            arr = rng.integers(0, 2, dims).astype(bool)
        else:
            arr = rng.integers(1, 10, dims).astype(dt)
        feeds[name] = arr
    return feeds


def check_against(
    shim: Any, reference: Any, *, rounds: int = 2, atol: float = 1e-4, rtol: float = 1e-3
) -> None:
    """Run ``shim`` and ``reference`` (feeds -> {name: array}) on fresh inputs; raise on mismatch."""
    problems = []
    for r in range(rounds):
        feeds = random_feeds(shim.inputs, batch=1 + r)
        got, want = shim.run(feeds), reference(feeds)
        for name in shim.output_names:
            a, b = got[name], np.asarray(want[name])
            if a.shape != b.shape:
                problems.append(f"{name}: shape {a.shape} != {b.shape}")
            elif not np.allclose(a, b, atol=atol, rtol=rtol):
                problems.append(f"{name}: max abs diff {float(np.max(np.abs(a - b))):.3g}")
    if problems:
        raise ValidationError(f"shim artifact {shim.artifact_dir} differs from TensorFlow", problems)
