"""Fixed-shape buckets beside the dynamic batch (``BoostConfig.static_buckets``): OpenVINO, inductor.

Each served batch size gets its own fixed-shape artifact and runs on it; any other size runs on
the dynamic one; all are validated, cached, exported and loaded back together.
"""

from __future__ import annotations

import numpy as np
import pytest

import yellowstone
from yellowstone.dispatch import run_buckets
from yellowstone.validate import compare

from ..conftest import backend_param
from .models import build

pytestmark = [pytest.mark.torch]


def _boost(cache_dir, backend="openvino", **kw):
    model, example = build("cnn")
    return model, yellowstone.boost(model, example, backends=backend, batch_sizes="1,4",
                                    time_budget_s=0.05, validation_rounds=1,
                                    cache_dir=cache_dir, **kw)


def _served_by(boosted, name="openvino") -> dict:
    return boosted._routes[name].compiled  # noqa: SLF001 - what the route holds


@pytest.mark.parametrize("name", [backend_param("openvino"), backend_param("inductor")])
def test_each_served_size_has_its_fixed_shape_artifact_and_others_run_dynamic(name, tmp_path):
    _, boosted = _boost(tmp_path / "cache", backend=name)
    cand = boosted.report.candidate(name)
    assert cand is not None and cand.status in ("ok", "chosen"), cand
    assert cand.buckets == [1, 4, None]
    if boosted.backend == name:
        compiled = _served_by(boosted, name)
        assert set(compiled) == {1, 4, None}
        for b in (1, 4):  # each bucket answers its own size, on its own
            feeds = boosted.handle.random_feeds(batch=b, seed=b)
            got = compiled[b].run(feeds)
            assert compare(boosted.handle.output_names, boosted.handle.run(feeds), got,
                           "fp32") == []
    if boosted.backend == name == "openvino":
        shapes = {b: compiled[b].compiled.inputs[0].get_partial_shape() for b in compiled}
        assert shapes[1].is_static and shapes[4].is_static and shapes[1][0].get_length() == 1
        assert shapes[None].is_dynamic
    handle = boosted.handle
    for batch in (1, 3, 4, 6):  # 3 and 6 have no bucket: the dynamic artifact answers them
        feeds = handle.random_feeds(batch=batch, seed=batch)
        got = boosted.run(feeds)
        assert got[0].shape[0] == batch
        assert compare(handle.output_names, handle.run(feeds), got, "fp32") == []


@pytest.mark.parametrize("name", [backend_param("openvino")])
def test_the_buckets_come_back_from_the_cache_and_an_artifact_dir(name, tmp_path):
    _, first = _boost(tmp_path / "cache", dispatch="single")
    if first.backend != name:
        pytest.skip(f"native beat OpenVINO on this toy model here ({first.report.chosen})")
    _, again = _boost(tmp_path / "cache", dispatch="single")
    assert again.report.cache == "hit"
    assert set(_served_by(again)) == {1, 4, None}
    out = first.save(tmp_path / "artifact")
    _, loaded = _boost(tmp_path / "other-cache", dispatch="single", artifact_dir=out)
    assert loaded.report.cache == "artifact"
    assert set(_served_by(loaded)) == {1, 4, None}
    feeds = loaded.handle.random_feeds(batch=3, seed=5)
    assert compare(loaded.handle.output_names, loaded.handle.run(feeds), loaded.run(feeds),
                   "fp32") == []


@pytest.mark.parametrize("name", [backend_param("openvino")])
def test_static_buckets_off_keeps_one_dynamic_artifact(name, tmp_path):
    _, boosted = _boost(tmp_path / "cache", static_buckets=False)
    assert boosted.report.candidate(name).buckets is None


def test_run_buckets_prefers_the_size_then_the_dynamic_artifact():
    class Tag:
        def __init__(self, tag):
            self.tag = tag

        def run(self, feeds):
            return [np.full((len(feeds["x"]),), self.tag)]

    compiled = {1: Tag(1), 4: Tag(4), None: Tag(0)}
    for batch, tag in ((1, 1), (4, 4), (3, 0), (9, 0)):
        out = run_buckets(compiled, {"x": np.zeros((batch, 2))}, batched=True)
        assert out[0].tolist() == [tag] * batch
