"""Shim artifacts: which C path (OpenVINO or ONNX Runtime) serves a SavedModel signature, and its files."""

from __future__ import annotations

from .choice import ShimChoice, ShimSelection, ShimTrial, Timer, bench_timer, choose, select_shim
from .manifest import (
    IDENTITY,
    MANIFEST,
    MODEL_FILES,
    SHIM_FORMAT,
    identity_of,
    ort_session,
    read_identity,
    write_shim_manifest,
)
from .placing import BOOSTED_DIR, cached_artifact, check_c_path, place_shim_dir, serves, write_shim_dir
from .shipping import prepare, prepare_signature
from .signatures import (
    CLASSIFY_METHOD,
    DEFAULT_POLICY,
    POLICIES,
    PREDICT_METHOD,
    REGRESS_METHOD,
    SHIM_BACKENDS,
    SHIPPED_DIR,
    TENSORFLOW,
    boostable,
    declared_shape,
    input_specs,
    load_signature,
    read_meta_graph,
    resolve_config,
    shim_plan,
)

__all__ = [
    "BOOSTED_DIR", "CLASSIFY_METHOD", "DEFAULT_POLICY", "IDENTITY", "MANIFEST", "MODEL_FILES", "POLICIES",
    "PREDICT_METHOD", "REGRESS_METHOD", "SHIM_BACKENDS", "SHIM_FORMAT", "SHIPPED_DIR", "TENSORFLOW",
    "ShimChoice", "ShimSelection", "ShimTrial", "Timer", "bench_timer", "boostable", "cached_artifact",
    "check_c_path", "choose", "declared_shape", "identity_of", "input_specs", "load_signature",
    "ort_session", "place_shim_dir", "prepare", "prepare_signature", "read_identity", "read_meta_graph",
    "resolve_config", "select_shim", "serves", "shim_plan", "write_shim_dir", "write_shim_manifest",
]
