"""The backends that own their thread pool load one artifact again with more threads (follow_load).

``BoostConfig.follow_load`` relies on it: the same compiled artifact, loaded with every core,
must really run on that many threads and give the same answers as the per-worker copy.
"""

from __future__ import annotations

import numpy as np
import pytest

from yellowstone import hardware
from yellowstone.backends import CompileRequest, get_backend
from yellowstone.model import load_model
from yellowstone.validate import compare

from ..conftest import backend_param
from .models import build

pytestmark = [pytest.mark.torch]


def _threads(name: str, compiled) -> int:
    """The intra-op thread count the backend's compiled model was given."""
    if name == "onnxruntime":
        return compiled.session.get_session_options().intra_op_num_threads
    return int(compiled.compiled.get_property("INFERENCE_NUM_THREADS"))


@pytest.mark.parametrize("name", [backend_param("onnxruntime"), backend_param("openvino")])
def test_the_same_artifact_loads_again_with_more_threads(name, tmp_path):
    if hardware.available_cores() < 2:  # OpenVINO caps its threads at the cores it may use
        pytest.skip("one core: there is no wider copy to load")
    backend = get_backend(name)
    assert backend.owns_threads
    handle = load_model(*build("cnn"))
    share = CompileRequest(batch=None, precision="fp32", threads=1, shared=True)
    narrow = backend.compile(handle, share, tmp_path)
    wide = backend.load(handle, CompileRequest(batch=None, precision="fp32", threads=2,
                                               shared=True), tmp_path)
    assert (_threads(name, narrow), _threads(name, wide)) == (1, 2)
    if name == "onnxruntime":  # shared cores: idle threads sleep in both copies
        for compiled in (narrow, wide):
            opts = compiled.session.get_session_options()
            assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    feeds = handle.random_feeds(batch=2, seed=11)
    assert all(np.any(v) for v in feeds.values())
    assert compare(handle.output_names, narrow.run(feeds), wide.run(feeds), "fp32") == []
    assert compare(handle.output_names, handle.run(feeds), wide.run(feeds), "fp32") == []


@pytest.mark.parametrize("name", [backend_param("openvino")])
def test_a_share_of_the_cores_is_not_pinned(name, tmp_path):
    """Workers each given a share must not all pin their threads to the first cores."""
    cores = hardware.available_cores()
    if cores < 2:
        pytest.skip("one core: every thread count is all of the cores")
    backend = get_backend(name)
    handle = load_model(*build("cnn"))
    share = backend.compile(handle, CompileRequest(batch=None, precision="fp32", threads=1,
                                                   shared=True), tmp_path)
    assert share.compiled.get_property("ENABLE_CPU_PINNING") is False
    every = backend.load(handle, CompileRequest(batch=None, precision="fp32", threads=cores,
                                                shared=True), tmp_path)
    assert int(every.compiled.get_property("INFERENCE_NUM_THREADS")) == cores
    default = ov_default_pinning()
    assert every.compiled.get_property("ENABLE_CPU_PINNING") is default
    feeds = handle.random_feeds(batch=2, seed=5)
    assert compare(handle.output_names, handle.run(feeds), share.run(feeds), "fp32") == []


def ov_default_pinning() -> bool:
    """OpenVINO's own pinning default for this host's CPU plugin."""
    import openvino as ov

    return bool(ov.Core().get_property("CPU", "ENABLE_CPU_PINNING"))
