"""Which C path serves: ``auto`` picks the one the shim timed fastest (times injected here), if it
beats TensorFlow; ``always`` picks the fastest valid one; a fitting shipped directory is used as is."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest

from yellowstone.plugins.tfserving.artifacts import ShimTrial, choose

OK = "ok"


def _trial(backend: str, p50: float, status: str = OK) -> ShimTrial:
    return ShimTrial(
        backend=backend,
        status=status,
        p50_ms=p50 if status == OK else math.inf,
        reason="" if status == OK else "outputs differ",
    )


def test_auto_serves_the_fastest_valid_c_path_when_it_beats_tensorflow():
    best, why = choose([_trial("openvino", 2.0), _trial("onnxruntime", 1.5)], 3.0, "auto")
    assert best is not None and best.backend == "onnxruntime"
    assert "onnxruntime 1.500 ms, openvino 2.000 ms; TensorFlow 3.000 ms" in why


def test_auto_leaves_tensorflow_when_it_is_faster():
    best, why = choose([_trial("openvino", 2.0), _trial("onnxruntime", 1.5)], 1.0, "auto")
    assert best is None and why.startswith("TensorFlow is faster: 1.000 ms")


def test_invalid_paths_never_serve():
    best, _ = choose([_trial("openvino", 0.1, "rejected"), _trial("onnxruntime", 1.5)], 3.0, "auto")
    assert best is not None and best.backend == "onnxruntime"
    best, why = choose(
        [_trial("openvino", 0.1, "rejected"), _trial("onnxruntime", 0.1, "failed")], 3.0, "auto"
    )
    assert best is None and "openvino rejected: outputs differ" in why and "onnxruntime failed" in why


def test_always_ignores_tensorflow_time():
    best, _ = choose([_trial("openvino", 2.0), _trial("onnxruntime", 2.5)], math.nan, "always")
    assert best is not None and best.backend == "openvino"


# -- the whole choice on a real SavedModel: boost, place, open, check, time (injected), pick ---------
@pytest.fixture
def cfg(shim_root):
    return {"cache_dir": str(shim_root / "cache"), "backends": "openvino,onnxruntime", "time_budget_s": 0.05}


def _timer(times, calls):
    rng = np.random.default_rng()
    feeds = {"x": rng.standard_normal((2, 4)).astype(np.float32), "k": np.array([1, 2], np.int32)}

    def timer(label, run):
        run(feeds)  # what is timed runs
        calls.append(label)
        return times[label]

    return timer


@pytest.mark.onnxruntime
@pytest.mark.openvino
@pytest.mark.tensorflow
@pytest.mark.parametrize(
    ("policy", "times", "want"),
    [
        ("auto", {"openvino": 2.0, "onnxruntime": 1.0, "tensorflow": 3.0}, "onnxruntime"),
        ("auto", {"openvino": 1.0, "onnxruntime": 2.0, "tensorflow": 3.0}, "openvino"),
        ("auto", {"openvino": 2.0, "onnxruntime": 1.5, "tensorflow": 1.0}, "tensorflow"),
        ("always", {"openvino": 2.0, "onnxruntime": 1.5, "tensorflow": 1.0}, "onnxruntime"),
    ],
)
def test_selection_serves_the_c_path_timed_fastest(
    boosted_saved_model, cfg, tmp_path, tf_reference, policy, times, want
):
    from yellowstone.plugins.tfserving.artifacts import select_shim

    calls: list[str] = []
    out = tmp_path / "out"
    choice = select_shim(
        boosted_saved_model,
        "serving_default",
        policy=policy,
        config=cfg,
        out_dir=out,
        timer=_timer(times, calls),
    )
    assert {t.backend: t.status for t in choice.trials} == {"openvino": OK, "onnxruntime": OK}
    assert sorted(calls) == sorted(["openvino", "onnxruntime", *(["tensorflow"] if policy == "auto" else [])])
    assert choice.backend == want
    if want == "tensorflow":
        assert choice.shim is None and not (out / "shim.txt").exists()
        assert "TensorFlow is faster" in choice.reason
        return
    try:
        assert choice.shim is not None and choice.shim.backend == want and choice.path == out
        assert f"backend {want}" in (out / "shim.txt").read_text()
        assert sorted(p.name for p in out.iterdir()) == sorted(["shim.txt", want])  # the loser is gone
        feeds = {
            "x": np.random.default_rng().standard_normal((3, 4)).astype(np.float32),
            "k": np.array([1, 5, 7], np.int32),
        }
        np.testing.assert_allclose(
            choice.shim.run(feeds)["z"], tf_reference(feeds)["z"], atol=1e-5, rtol=1e-4
        )
    finally:
        choice.shim.close()
    # The published directory opens on its own (paths rebased under <backend>/).
    from yellowstone.plugins.tfserving.native import ShimModel

    again = ShimModel(out)
    assert again.backend == want
    again.close()


@pytest.mark.onnxruntime
@pytest.mark.openvino
@pytest.mark.tensorflow
def test_a_fitting_shipped_directory_serves_without_boosting(boosted_saved_model, cfg, tmp_path, monkeypatch):
    import yellowstone
    from yellowstone.plugins.tfserving.artifacts import select_shim

    shipped = boosted_saved_model / "yellowstone" / "serving_default"

    def no_boost(*args, **kwargs):
        raise AssertionError("boosted although the shipped directory fits")

    monkeypatch.setattr(yellowstone, "boost", no_boost)
    calls: list[str] = []
    choice = select_shim(
        boosted_saved_model,
        "serving_default",
        policy="always",
        config=cfg,
        shipped=shipped,
        timer=_timer({"openvino": 1.0}, calls),
    )
    try:
        assert choice.backend == "openvino" and choice.path == shipped and calls == ["openvino"]
    finally:
        choice.shim.close()

    # A shipped directory built elsewhere is not used: the choice is made here.
    monkeypatch.undo()
    stale = tmp_path / "stale"
    shutil.copytree(shipped, stale)
    text = (stale / "shim.txt").read_text()
    (stale / "shim.txt").write_text(
        "\n".join("hardware 0000" if line.startswith("hardware ") else line for line in text.splitlines())
        + "\n"
    )
    choice = select_shim(
        boosted_saved_model,
        "serving_default",
        policy="always",
        config=cfg,
        shipped=stale,
        out_dir=tmp_path / "out",
        timer=_timer({"openvino": 2.0, "onnxruntime": 1.0}, calls),
    )
    try:
        assert choice.backend == "onnxruntime" and choice.path == tmp_path / "out"
    finally:
        choice.shim.close()
