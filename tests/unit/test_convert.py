"""Conversion paths are named, injectable values; failures name the path; torch -> ONNX keeps dynamic dims."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from yellowstone.convert import Conversion, get_conversion, register_conversion
from yellowstone.errors import ConfigError, ConversionError

from ..conftest import requires


def test_unknown_path_lists_the_known_ones():
    with pytest.raises(ConfigError) as info:
        get_conversion("torch-to-magic")
    text = str(info.value)
    assert "torch-to-magic" in text
    assert all(name in text for name in ("torch-dynamo-onnx", "torch-legacy-onnx", "tf2onnx"))


def test_a_registered_path_is_used_and_its_failure_is_named(tmp_path):
    seen = []

    def ok(model, out: Path, dynamic_batch: bool) -> Path:
        seen.append((model, dynamic_batch))
        out.write_bytes(b"onnx")
        return out

    def broken(model, out, dynamic_batch):
        raise RuntimeError("unsupported op Foo")

    register_conversion(Conversion(name="test-ok", source="torch", target="onnx", fn=ok))
    register_conversion(Conversion(name="test-broken", source="torch", target="onnx", fn=broken))
    model = types.SimpleNamespace(name="m")
    out = get_conversion("test-ok").convert(model, tmp_path / "m.onnx", dynamic_batch=True)
    assert out.read_bytes() == b"onnx" and seen == [(model, True)]
    with pytest.raises(ConversionError, match=r"test-broken: RuntimeError: unsupported op Foo"):
        get_conversion("test-broken").convert(model, tmp_path / "b.onnx", dynamic_batch=False)


@requires("torch")
def test_torchscript_exporter_keeps_batch_and_named_dims_dynamic(tmp_path):
    import onnx
    import torch

    from yellowstone.model import load_model
    from yellowstone.spec import parse_input_spec

    class Pool(torch.nn.Module):
        def forward(self, ids, mask):
            return (ids.float() * mask.float()).sum(dim=1, keepdim=True)

    specs = [parse_input_spec("ids:-1xseq=1..64:int64"), parse_input_spec("mask:-1xseq=1..64:int64")]
    handle = load_model(Pool(), input_specs=specs)
    path = get_conversion("torch-legacy-onnx").convert(handle, tmp_path / "m.onnx",
                                                       dynamic_batch=True)
    graph = onnx.load(str(path)).graph
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in graph.input}
    assert dims["ids"][1] == dims["mask"][1] == "seq"  # tied by name
    assert isinstance(dims["ids"][0], str) and dims["ids"][0]  # batch is symbolic too
