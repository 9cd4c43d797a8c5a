"""Converters get a private copy of a TorchScript module: OpenVINO's TorchScript import rewrites
the module it is handed, which slowed the user's own forward (the fallback path) by ~20%."""

from __future__ import annotations

import pytest
import torch

from yellowstone.backends import CompileRequest, get_backend
from yellowstone.model import load_model

from ..conftest import requires
from .models import build

pytestmark = [pytest.mark.slow, pytest.mark.torch]


@requires("openvino")
def test_openvino_imports_a_copy_of_torchscript(monkeypatch, tmp_path):
    import openvino as ov

    model, example = build("mlp")
    scripted = torch.jit.trace(model, example)
    handle = load_model(scripted, example)
    seen = []
    real = ov.convert_model

    def spy(obj, *args, **kwargs):
        seen.append(obj)
        return real(obj, *args, **kwargs)

    monkeypatch.setattr(ov, "convert_model", spy)
    compiled = get_backend("openvino").compile(handle, CompileRequest(batch=None, precision="fp32"),
                                               tmp_path)
    assert seen and all(obj is not scripted for obj in seen)
    feeds = handle.random_feeds(batch=3, seed=1)
    torch.testing.assert_close(torch.from_numpy(compiled.run(feeds)[0]),
                               torch.from_numpy(handle.run(feeds)[0]), atol=1e-4, rtol=1e-3)


def test_module_copy_is_equal_but_not_the_same_object():
    model, example = build("mlp")
    scripted = torch.jit.trace(model, example)
    handle = load_model(scripted, example)
    copy = handle.module_copy()
    assert copy is not scripted
    torch.testing.assert_close(copy(*example), scripted(*example))
    eager = load_model(model, example)
    assert eager.module_copy() is model  # eager modules are not rewritten by any converter
