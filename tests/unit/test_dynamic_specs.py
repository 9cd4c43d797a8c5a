"""The dynamic-dimension grammar: ``-1``, names and ``NAME=LO..HI`` in every spec form."""

from __future__ import annotations

import json

import numpy as np
import pytest

from yellowstone.errors import BadRequestError, ConfigError
from yellowstone.serving import parse_specs
from yellowstone.spec import DEFAULT_RANGE, TensorSpec, parse_input_spec, random_inputs


def test_string_form_takes_sizes_names_and_ranges():
    s = parse_input_spec("ids:-1xseq=1..512:int64")
    assert s.shape == (None, "seq") and s.dtype == "int64" and s.ranges == {"seq": (1, 512)}
    s = parse_input_spec("image:1x3xh=16..64xw=16..64")
    assert s.shape == (1, 3, "h", "w") and s.ranges == {"h": (16, 64), "w": (16, 64)}
    s = parse_input_spec("ids:-1xseq:int64")
    assert s.shape == (None, "seq") and s.ranges == {}
    assert s.range_of("seq") == DEFAULT_RANGE == (1, 512)
    assert s.range_of("batch") is None  # the batch is unbounded unless given a range


@pytest.mark.parametrize("bad", ["x:1x?", "x:1xseq=0..4", "x:1xseq=9..4", "x:1xseq=1..",
                                 "x:1x0", "x:1x-3", "x:1xxseq", "x:seq=1..4xseq=2..4"])
def test_bad_dims_are_config_errors(bad):
    with pytest.raises(ConfigError):
        parse_input_spec(bad)


def test_list_mapping_and_flag_forms_agree():
    want = TensorSpec(name="ids", shape=(None, "seq"), dtype="int64", ranges={"seq": (1, 256)})
    forms = ["ids:-1xseq=1..256:int64",
             {"name": "ids", "shape": [-1, "seq=1..256"], "dtype": "int64"},
             {"name": "ids", "shape": "-1xseq=1..256", "dtype": "int64"},
             {"name": "ids", "shape": [-1, "seq"], "dtype": "int64", "ranges": {"seq": [1, 256]}}]
    for form in forms:
        assert parse_specs([form], where="--input") == (want,), form
    (bare,) = parse_specs([[-1, "seq=2..9"]], where="inputs")
    assert bare.name == "input0" and bare.ranges == {"seq": (2, 9)}
    with pytest.raises(ConfigError, match="inputs"):
        parse_specs([{"name": "x", "shape": [1, "seq=5..2"]}], where="inputs")


def test_to_dict_round_trips_ranges_through_json():
    spec = TensorSpec(name="ids", shape=("batch", "seq"), dtype="int64", ranges={"seq": (1, 256)})
    data = json.loads(json.dumps(spec.to_dict()))
    assert data["ranges"] == {"seq": [1, 256]}
    assert TensorSpec.from_dict(data) == spec
    plain = TensorSpec(name="x", shape=(None, 4))
    assert "ranges" not in plain.to_dict()  # cache keys of static models do not change
    assert TensorSpec.from_dict(plain.to_dict()) == plain


def test_check_refuses_sizes_outside_the_range_and_names_it():
    spec = TensorSpec(name="input_ids", shape=("batch", "seq"), dtype="int64",
                      ranges={"seq": (1, 512)})
    spec.check(np.ones((3, 512), np.int64))
    with pytest.raises(BadRequestError) as exc:
        spec.check(np.ones((1, 600), np.int64))
    assert str(exc.value) == "input 'input_ids': dimension 1 (seq) is 600, outside 1..512"
    assert exc.value.http_status == 400
    unbounded = TensorSpec(name="x", shape=("batch", "n"))
    unbounded.check(np.ones((5000, 512), np.float32))  # batch unbounded, n in 1..512
    with pytest.raises(BadRequestError, match=r"dimension 1 \(n\) is 513, outside 1\.\.512"):
        unbounded.check(np.ones((1, 513), np.float32))


def test_random_inputs_size_named_dims_tie_them_and_keep_masks():
    specs = [TensorSpec(name="ids", shape=("batch", "seq"), dtype="int64"),
             TensorSpec(name="mask", shape=("batch", "seq"), dtype="int64")]
    like = {"ids": np.array([[101, 7592, 2088, 102, 0, 0]]),
            "mask": np.array([[1, 1, 1, 1, 0, 0]])}
    feeds = random_inputs(specs, batch=5, like=like, seed=0)
    assert feeds["ids"].shape == feeds["mask"].shape == (5, 6)  # the example's length
    for n in (1, 7, 300):
        feeds = random_inputs(specs, batch=4, like=like, seed=n, dims={"seq": n})
        assert feeds["ids"].shape == feeds["mask"].shape == (4, n)
        rows = feeds["mask"]
        assert set(np.unique(rows)) <= {0, 1} and rows[:, 0].all()
        assert np.all(np.diff(rows, axis=1) <= 0)  # ones then zeros: still a padding mask
        assert feeds["ids"].min() >= 0 and feeds["ids"].max() <= 7592
    # without examples, a named dim takes 8 clamped into its range, one size for tied inputs
    ranged = [TensorSpec(name="a", shape=(None, "h"), ranges={"h": (16, 64)}),
              TensorSpec(name="b", shape=(None, "h"))]
    feeds = random_inputs(ranged, seed=0)
    assert feeds["a"].shape == feeds["b"].shape == (1, 16)


def test_anonymous_dims_tie_by_axis_and_example_size():
    torch = pytest.importorskip("torch")
    from yellowstone.model import load_model

    class ThreeInputs(torch.nn.Module):
        def forward(self, ids, mask, extra):
            return (ids * mask).sum(1) + extra.sum(1)

    example = (torch.ones(2, 5, dtype=torch.int64), torch.ones(2, 5, dtype=torch.int64),
               torch.ones(2, 3, dtype=torch.int64))
    specs = parse_specs(["ids:-1x-1:int64", "mask:-1x-1:int64", "extra:-1x-1:int64"], where="t")
    handle = load_model(ThreeInputs(), example, input_specs=specs)
    # ids and mask are 5 long in the example: one length; extra (3) is a dimension of its own.
    assert [s.shape for s in handle.inputs] == [("batch", "ids_dim1"), ("batch", "ids_dim1"),
                                                ("batch", "extra_dim1")]
    feeds = handle.random_feeds(batch=1, seed=0, dims={"ids_dim1": 9, "extra_dim1": 2})
    assert [feeds[k].shape for k in ("ids", "mask", "extra")] == [(1, 9), (1, 9), (1, 2)]
