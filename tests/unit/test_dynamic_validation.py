"""Named dims through the handle and validation, on a numpy model and fake backends."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest

import yellowstone
from yellowstone.backends import register_backend, unregister_backend
from yellowstone.backends.base import Availability, CompileRequest
from yellowstone.backends.tvm import TvmBackend
from yellowstone.config import BoostConfig
from yellowstone.errors import BadRequestError, ConfigError
from yellowstone.judge import dim_points, validation_sets
from yellowstone.model import ModelHandle
from yellowstone.serving import parse_specs
from yellowstone.spec import TensorSpec

EXAMPLE_LEN = 10


def _pool(emb, ids, mask):
    """Masked mean of token embeddings: what a sentence encoder's pooling computes."""
    m = mask[..., None].astype(np.float32)
    return (emb[ids] * m).sum(1) / np.maximum(m.sum(1), 1.0)


class SeqModel(ModelHandle):
    """A batched two-input sequence model (ids, mask) in numpy; example length 10 with padding."""

    framework = kind = "numpy"

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.emb = rng.standard_normal((50, 4)).astype(np.float32)
        self._name = "numpy-seq"
        ids = rng.integers(1, 50, (2, EXAMPLE_LEN))
        mask = (np.arange(EXAMPLE_LEN) < np.array([[7], [10]])).astype(np.int64)
        self.inputs = (TensorSpec(name="ids", shape=ids.shape, dtype="int64"),
                       TensorSpec(name="mask", shape=mask.shape, dtype="int64"))
        self._finish({"ids": ids, "mask": mask}, ["pooled"])

    def _fingerprint(self):
        return hashlib.sha256(self.emb.tobytes()).hexdigest()

    def run(self, feeds):
        return [_pool(self.emb, feeds["ids"], feeds["mask"])]


class SeqCompiled:
    def __init__(self, emb, pinned):
        self.emb, self.pinned = emb, pinned

    def run(self, feeds):
        ids, mask = feeds["ids"], feeds["mask"]
        if self.pinned and ids.shape[1] != EXAMPLE_LEN:
            # a backend traced at the example's length: pads/truncates to it, ignores the mask
            n = EXAMPLE_LEN
            ids = np.pad(ids, ((0, 0), (0, max(0, n - ids.shape[1]))))[:, :n]
            mask = np.ones_like(ids)
        return [_pool(self.emb, ids, mask)]


class SeqBackend:
    cacheable = False
    dynamic_batch = True
    auto_excluded = ""

    def __init__(self, name, pinned):
        self.name, self.pinned = name, pinned

    def probe(self):
        return Availability(name=self.name, available=True, version="1.0")

    def version(self):
        return "1.0"

    def supports(self, model):
        return None

    def supports_precision(self, precision):
        return None

    def compile(self, model, request: CompileRequest, workdir: Path):
        return SeqCompiled(model.emb, self.pinned)

    load = compile


@pytest.fixture
def handle():
    h = SeqModel()
    h.apply_specs(parse_specs(["ids:-1xseq=1..64:int64", "mask:-1xseq:int64"], where="test"))
    return h


def test_specs_keep_names_ranges_and_ties(handle):
    assert handle.batched
    assert [s.shape for s in handle.inputs] == [("batch", "seq"), ("batch", "seq")]
    assert all(s.ranges == {"seq": (1, 64)} for s in handle.inputs)  # the range is shared
    assert handle.dim_ranges == {"seq": (1, 64)} and handle.example_dims == {"seq": 10}
    assert handle.dynamic_axes(dynamic_batch=True) == [{0: "batch", 1: "seq"}] * 2
    assert handle.dynamic_axes(dynamic_batch=False) == [{1: "seq"}] * 2
    assert handle.trace_dims(2) == {"seq": 10}


def test_anonymous_dims_of_one_example_length_are_one_dim():
    h = SeqModel()
    h.apply_specs(parse_specs([[-1, -1], [-1, -1]], where="test"))  # positional, anonymous
    assert [s.shape for s in h.inputs] == [("batch", "ids_dim1"), ("batch", "ids_dim1")]
    assert h.dim_ranges == {"ids_dim1": (1, 512)}  # the default range
    assert h.trace_dims(2) == {"ids_dim1": 10}


def test_example_outside_the_specs_is_a_config_error():
    with pytest.raises(ConfigError, match=r"seq\) is 10, outside 1\.\.8"):
        SeqModel().apply_specs(parse_specs(["ids:-1xseq=1..8:int64"], where="test"))
    with pytest.raises(ConfigError, match="two ranges"):
        SeqModel().apply_specs(parse_specs(["ids:-1xseq=1..64:int64", "mask:-1xseq=1..32:int64"],
                                           where="test"))
    with pytest.raises(ConfigError, match="rank"):
        SeqModel().apply_specs(parse_specs(["ids:-1xseqxn:int64"], where="test"))


def test_random_feeds_take_dims_and_check_feeds_ties_and_bounds(handle):
    feeds = handle.random_feeds(batch=3, seed=0, dims={"seq": 7})
    assert feeds["ids"].shape == feeds["mask"].shape == (3, 7)
    handle.check_feeds(feeds)
    with pytest.raises(BadRequestError, match=r"dimension 1 \(seq\) is 65, outside 1\.\.64"):
        handle.check_feeds(handle.random_feeds(batch=1, seed=0, dims={"seq": 65}))
    bad = dict(feeds, mask=feeds["mask"][:, :5])
    with pytest.raises(BadRequestError, match=r"'mask': dimension 1 \(seq\) is 5, but input 'ids'"):
        handle.check_feeds(bad)


def test_validation_covers_the_range(handle):
    assert dim_points(handle) == [{"seq": 1}, {"seq": 64}, {"seq": 7}]
    cfg = BoostConfig.from_dict({"validation_rounds": 1})
    sets = validation_sets(handle, cfg, [1, 4], ())
    lengths = sorted({feeds["ids"].shape[1] for _, feeds, _ in sets})
    assert lengths == [1, 7, 10, 64]
    assert "seq=64" in " ".join(label for label, _, _ in sets)


class ImageModel(ModelHandle):
    """Global average pooling of a (batch, 3, h, w) image: any height and width."""

    framework = kind = "numpy"

    def __init__(self):
        super().__init__()
        x = np.random.default_rng(0).random((1, 3, 24, 32), dtype=np.float32)
        self.inputs = (TensorSpec(name="image", shape=x.shape),)
        self._finish({"image": x}, [])

    def _fingerprint(self):
        return "image"

    def run(self, feeds):
        return [feeds["image"].mean(axis=(2, 3))]


def test_several_dims_are_judged_small_large_odd_and_mixed():
    h = ImageModel()
    h.apply_specs(parse_specs(["image:-1x3xh=16..64xw=16..64"], where="test"))
    assert h.example_dims == {"h": 24, "w": 32} and h.trace_dims(2) == {"h": 24, "w": 32}
    assert dim_points(h) == [{"h": 16, "w": 16}, {"h": 64, "w": 64}, {"h": 41, "w": 41},
                             {"h": 16, "w": 64}]
    feeds = h.random_feeds(batch=2, seed=0, dims={"h": 17, "w": 63})
    assert feeds["image"].shape == (2, 3, 17, 63)
    assert 0.0 <= feeds["image"].min() and feeds["image"].max() <= 1.0  # like the example


def test_candidate_right_only_at_the_example_length_is_rejected(handle, cache_dir):
    register_backend("seq-good", SeqBackend("seq-good", pinned=False))
    register_backend("seq-pinned", SeqBackend("seq-pinned", pinned=True))
    try:
        boosted = yellowstone.boost(handle, backends="seq-pinned,seq-good", time_budget_s=0.02,
                                    validation_rounds=1, batch_sizes=(1, 2))
    finally:
        unregister_backend("seq-good")
        unregister_backend("seq-pinned")
    rep = boosted.report
    assert rep.candidate("seq-pinned").status == "rejected"
    assert "seq=" in rep.candidate("seq-pinned").reason
    assert rep.candidate("seq-good").status in ("ok", "chosen")
    assert rep.inputs[0]["ranges"] == {"seq": [1, 64]}
    with pytest.raises(BadRequestError, match=r"outside 1\.\.64"):
        boosted.run(handle.random_feeds(batch=1, seed=0, dims={"seq": 100}))


def test_tvm_buckets_a_masked_length_and_declines_other_dims(handle):
    assert TvmBackend().supports(SeqModel()) is None
    assert TvmBackend().supports(handle) is None  # seq is masked: one build per length bucket
    unmasked = SeqModel()
    unmasked.apply_specs(parse_specs(["ids:-1xseq=1..64:int64"], where="test"))
    assert "carries no padding mask" in TvmBackend().supports(unmasked)


def test_check_feeds_remembers_an_accepted_signature_for_the_current_specs(handle, monkeypatch):
    checked = []
    real = ModelHandle._check_feeds
    monkeypatch.setattr(ModelHandle, "_check_feeds",
                        lambda self, feeds: (checked.append(1), real(self, feeds))[1])
    feeds = handle.random_feeds(batch=2, seed=0, dims={"seq": 7})
    handle.check_feeds(feeds)
    handle.check_feeds(handle.random_feeds(batch=2, seed=1, dims={"seq": 7}))  # same signature
    assert len(checked) == 1
    # a new shape, dtype or input set is checked (and refused where wrong), memo or not
    handle.check_feeds(handle.random_feeds(batch=2, seed=0, dims={"seq": 9}))
    with pytest.raises(BadRequestError, match="expected dtype"):
        handle.check_feeds(dict(feeds, ids=feeds["ids"].astype(np.float32)))
    with pytest.raises(BadRequestError, match=r"'mask': dimension 1 \(seq\) is 5"):
        handle.check_feeds(dict(feeds, mask=feeds["mask"][:, :5]))
    with pytest.raises(BadRequestError, match="missing input"):
        handle.check_feeds({"ids": feeds["ids"]})
    handle.check_feeds(feeds)
    assert len(checked) == 5  # the accepted seq=7 signature again: not re-checked
    # new specs (a narrower range) forget what the old ones accepted
    handle.inputs = tuple(dataclasses.replace(s, ranges={"seq": (1, 5)}) for s in handle.inputs)
    with pytest.raises(BadRequestError, match=r"outside 1\.\.5"):
        handle.check_feeds(feeds)
