"""KServe's layout reads an artifact directory's input specs as the core reads the directory.

A malformed or tampered ``yellowstone.json`` gives no specs and one WARNING naming it, never an
exception that would stop the predictor at every start.
"""

from __future__ import annotations

import json
import logging

import pytest

from yellowstone.artifact_dir import ARTIFACT_FORMAT, ARTIFACT_JSON
from yellowstone.cache import write_manifest
from yellowstone.plugins.kserve.layout import artifact_inputs
from yellowstone.spec import TensorSpec

LOGGER = "yellowstone.plugins.kserve.layout"
SPEC = TensorSpec(name="x", shape=(None, 16), dtype="float32")


def _meta(**changes) -> dict:
    meta = {"format": ARTIFACT_FORMAT, "yellowstone": "0.1.0", "backend": "onnxruntime",
            "backend_version": "1.0", "model_fingerprint": "f" * 16, "hardware": "cpu-x86",
            "precision": "fp32", "dynamic_batch": True, "buckets": [],
            "inputs": [SPEC.to_dict()], "outputs": ["y"], "report": {}}
    meta.update(changes)
    return {k: v for k, v in meta.items() if v is not ...}


def _artifact(tmp_path, data, *, manifest: bool = True):
    d = tmp_path / "artifact"
    d.mkdir()
    (d / ARTIFACT_JSON).write_text(json.dumps(data))
    if manifest:
        write_manifest(d, "f" * 16, {"backend": "onnxruntime"})
    return d


def _warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


def test_a_sound_artifact_gives_its_specs(tmp_path, caplog):
    caplog.set_level(logging.WARNING, LOGGER)
    assert artifact_inputs(_artifact(tmp_path, _meta())) == (SPEC,)
    assert _warnings(caplog) == []


@pytest.mark.parametrize("data", [
    [1, 2],
    {"inputs": [1]},
    _meta(hardware=...),  # no hardware key
    _meta(inputs=[1]),  # a well-formed file whose input is no spec
    _meta(inputs={"x": 1}),
    "text",
], ids=["list", "inputs-only", "no-hardware", "bad-input", "inputs-mapping", "string"])
def test_a_malformed_meta_gives_no_specs_and_one_warning(tmp_path, caplog, data):
    caplog.set_level(logging.WARNING, LOGGER)
    path = _artifact(tmp_path, data)
    assert artifact_inputs(path) == ()
    (record,) = _warnings(caplog)
    assert str(path / ARTIFACT_JSON) in record.getMessage()
    assert record.exc_info is None


def test_meta_is_not_read_before_its_manifest_is_verified(tmp_path, caplog):
    caplog.set_level(logging.WARNING, LOGGER)
    path = _artifact(tmp_path, _meta())
    (path / ARTIFACT_JSON).write_text(json.dumps(_meta(inputs=[{"name": "evil", "shape": [1]}])))
    assert artifact_inputs(path) == ()
    (record,) = _warnings(caplog)
    assert "hash mismatch" in record.getMessage()


def test_an_artifact_without_manifest_or_meta_gives_no_specs(tmp_path, caplog):
    caplog.set_level(logging.WARNING, LOGGER)
    assert artifact_inputs(_artifact(tmp_path, _meta(), manifest=False)) == ()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert artifact_inputs(empty) == ()
    assert artifact_inputs(None) == ()
    assert len(_warnings(caplog)) == 2
