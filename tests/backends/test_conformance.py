"""One conformance suite over every registered backend: compile, run, compare with the framework.

Each backend ``backend_names()`` lists (built-in, entry point or registered) compiles each model
directly (no benchmarking), runs it on fresh random inputs at several batch sizes (dynamic batch
where the backend declares it, else its bucket), is compared with PyTorch under the fp32
tolerance, and is then reloaded from its artifact directory alone. A backend that says cleanly
that it cannot run here (``available=False``) is skipped with its reason; one whose ``probe``
raises fails.
"""

from __future__ import annotations

import numpy as np
import pytest

from yellowstone.backends import Availability, CompileRequest, backend_names, get_backend
from yellowstone.model import load_model
from yellowstone.validate import compare

from .models import NAMES, build

pytestmark = [pytest.mark.slow, pytest.mark.torch]


def pytest_generate_tests(metafunc):
    """Parametrise ``backend_name`` over every registered backend, with its marker if any."""
    if "backend_name" not in metafunc.fixturenames:
        return
    markers = {line.split(":")[0].strip() for line in metafunc.config.getini("markers")}
    metafunc.parametrize("backend_name", [
        pytest.param(name, id=name, marks=[getattr(pytest.mark, name)] if name in markers else [])
        for name in backend_names()])


@pytest.fixture(scope="module")
def handles():
    """One handle per model, shared so the ONNX/export conversions run once per model."""
    cache = {}

    def get(name):
        if name not in cache:
            model, example = build(name)
            cache[name] = load_model(model, example)
        return cache[name]

    return get


@pytest.mark.parametrize("model_name", NAMES)
def test_backend_matches_framework(backend_name, model_name, handles, tmp_path):
    backend = get_backend(backend_name)
    avail = backend.probe()  # a probe that raises fails here: only a clean "no" skips
    assert isinstance(avail, Availability) and avail.name == backend_name
    if not avail.available:
        assert avail.reason, f"{backend_name} is unavailable without a reason"
        pytest.skip(f"{backend_name}: {avail.reason}")
    handle = handles(model_name)
    assert handle.batched
    dynamic = backend.dynamic_batch
    request = CompileRequest(batch=None if dynamic else 3, precision="fp32")
    compiled = backend.compile(handle, request, tmp_path)
    batches = (1, 3, 5) if dynamic else (3,)
    for seed, batch in enumerate(batches):
        feeds = handle.random_feeds(batch=batch, seed=100 + seed)
        assert all(np.any(v) for v in feeds.values())
        ref = handle.run(feeds)
        got = compiled.run(feeds)
        problems = compare(handle.output_names, ref, got, "fp32", context=f"batch {batch}")
        assert problems == [], problems
        assert [g.shape for g in got] == [r.shape for r in ref]
    reloaded = get_backend(backend_name).load(handle, request, tmp_path)
    feeds = handle.random_feeds(batch=3, seed=7)
    assert compare(handle.output_names, handle.run(feeds), reloaded.run(feeds), "fp32") == []


def test_output_names_follow_the_model(handles):
    assert handles("two_in_two_out").output_names == ("scores", "embedding")
    assert [s.name for s in handles("two_in_two_out").inputs] == ["left", "right"]
    assert [s.name for s in handles("encoder").inputs] == ["input_ids"]
