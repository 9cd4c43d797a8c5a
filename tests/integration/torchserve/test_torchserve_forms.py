"""Model forms and custom handlers through the boost handler, against a real TorchServe.

TorchScript, torch.export ``.pt2``, ONNX and eager models, each under a custom ``BaseHandler``
subclass shipped with ``--extra-files`` (``file.py`` and ``file.py:Class``); a model no backend
compiles still serves on native; a wrong tensor shape is a 400 and the worker keeps serving; with
TorchServe batching, rows of the wrong length fail alone and every good request is answered.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from tsutil import ASSETS, BOOST_HANDLER, FAST, TorchServe, archive, write_config

pytestmark = [pytest.mark.server, pytest.mark.slow]

HANDLER = ASSETS / "tensor_handler.py"
ONNX_HANDLER = ASSETS / "onnx_handler.py"


@pytest.fixture(scope="module")
def server(tmp_path_factory, ys_cache, models):
    root = tmp_path_factory.mktemp("ts-forms")
    ts = TorchServe(root, ys_cache)
    cfg = root / "cfg"
    cfg.mkdir()
    ys = {"input_shape": [1, 16], **FAST}
    batching = {"batchSize": 4, "maxBatchDelay": 200}

    def boosted(name, serialized, handler, model_file=None, extra=(), **top):
        config = write_config(cfg / f"{name}.yaml", yellowstone={"handler": handler, **ys}, **top)
        archive(ts.store, name, serialized, str(BOOST_HANDLER), model_file=model_file,
                extra=[*extra], config=config)

    archive(ts.store, "ts_stock", models["ts"], str(HANDLER))
    boosted("ts_boost", models["ts"], "tensor_handler.py", extra=[HANDLER], **batching)
    # tensor_handler's preprocess stacks the rows: one wrong-length row breaks its batch.
    boosted("stack_boost", models["ts"], "tensor_handler.py", extra=[HANDLER], batchSize=4,
            maxBatchDelay=50)
    boosted("pt2_boost", models["pt2"], "tensor_handler.py:TensorHandler", extra=[HANDLER])
    archive(ts.store, "onnx_stock", models["onnx"], str(ONNX_HANDLER))
    boosted("onnx_boost", models["onnx"], "onnx_handler.py", extra=[ONNX_HANDLER], **batching)
    boosted("sort_boost", models["sort_state"], "tensor_handler.py", extra=[HANDLER],
            model_file=models["sort_file"])
    try:
        yield ts
    finally:
        ts.stop()


def _rows(seed, n=1):
    return np.random.default_rng(seed).standard_normal((n, 16)).astype(np.float32).tolist()


def _call(server, name, row):
    r = server.predict(name, json.dumps(row).encode())
    assert r.status_code == 200, f"{name}: {r.status_code} {r.text}"
    return np.asarray(r.json(), dtype=np.float32)


@pytest.mark.parametrize("name,form", [("ts_boost", "torchscript"), ("pt2_boost", "pt2")])
def test_torch_forms_match_the_model(server, mlp_reference, name, form):
    server.register("ts_stock.mar")
    server.register(f"{name}.mar")
    rows = _rows(7, 3)
    want = mlp_reference(rows)
    for row, ref in zip(rows, want):
        got = _call(server, name, row)
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(got, _call(server, "ts_stock", row), atol=1e-4, rtol=1e-4)
    (info,) = server.describe(name)
    assert info["form"] == form
    assert info["backend"] in ("onnxruntime", "openvino"), info


def test_onnx_session_is_boosted(server, mlp_reference):
    server.register("onnx_stock.mar")
    server.register("onnx_boost.mar")
    rows = _rows(11, 3)
    for row, ref in zip(rows, mlp_reference(rows)):
        got = _call(server, "onnx_boost", row)
        np.testing.assert_allclose(got, _call(server, "onnx_stock", row), atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)
    (info,) = server.describe("onnx_boost")
    assert info["form"] == "onnx"
    # An ONNX model's native run is ONNX Runtime itself, so on a model this small native may
    # legitimately win; the compiled candidates must still have validated through the session.
    statuses = {c["backend"]: c["status"] for c in info["report"]["candidates"]}
    assert statuses["onnxruntime"] in ("chosen", "ok"), statuses
    assert statuses[info["backend"]] == "chosen"


def test_concurrent_requests_batch_without_recompiling(server, mlp_reference):
    import concurrent.futures as cf

    server.register("ts_boost.mar")
    rows = _rows(23, 10)
    with cf.ThreadPoolExecutor(5) as pool:
        got = list(pool.map(lambda row: _call(server, "ts_boost", row), rows))
    np.testing.assert_allclose(np.stack(got), mlp_reference(rows), atol=1e-4, rtol=1e-4)
    assert server.model_log().count("ts_boost: served by backend") == 1


def test_wrong_tensor_shape_is_400_and_worker_keeps_serving(server, mlp_reference):
    server.register("ts_boost.mar")
    r = server.predict("ts_boost", json.dumps([1.0, 2.0, 3.0]).encode())
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == 400
    assert "BadRequestError" in body["message"] and "shape" in body["message"], body
    row = _rows(99)[0]
    np.testing.assert_allclose(_call(server, "ts_boost", row), mlp_reference([row])[0],
                               atol=1e-4, rtol=1e-4)


def test_model_no_backend_compiles_serves_on_native(server, models):
    import torch
    from sort_net import SortNet

    server.register("sort_boost.mar")
    net = SortNet().eval()
    net.load_state_dict(torch.load(models["sort_state"], weights_only=True))
    for row in _rows(5, 2):
        with torch.inference_mode():
            want = net(torch.tensor([row])).numpy()[0]
        np.testing.assert_allclose(_call(server, "sort_boost", row), want, atol=1e-5)
    (info,) = server.describe("sort_boost")
    assert info["backend"] == "native"
    assert "no candidate passed" in info["fallback_reason"]
    assert "sort_boost: served by backend native" in server.model_log()
    assert re.search(r'YellowstoneFallbacks\{[^}]*Reason="compile"', server.scrape())


def test_bad_rows_in_concurrent_batches_fail_alone(server, mlp_reference):
    """6 clients send good rows, 2 send rows of the wrong length, all at once, batchSize 4."""
    import concurrent.futures as cf

    server.register("stack_boost.mar")
    alone = server.predict("stack_boost", json.dumps([1.0] * 15).encode())
    assert alone.status_code == 400, alone.text
    per_stream = 6
    good = [_rows(100 + s, per_stream) for s in range(6)]
    bad = [np.random.default_rng(200 + s).standard_normal((per_stream, 15)).tolist()
           for s in range(2)]

    def stream(rows):
        return [server.predict("stack_boost", json.dumps(row).encode()) for row in rows]

    with cf.ThreadPoolExecutor(8) as pool:
        good_futures = [pool.submit(stream, rows) for rows in good]
        bad_futures = [pool.submit(stream, rows) for rows in bad]
        good_answers = [f.result() for f in good_futures]
        bad_answers = [f.result() for f in bad_futures]
    for rows, answers in zip(good, good_answers):
        for r, want in zip(answers, mlp_reference(rows)):
            assert r.status_code == 200, f"good row failed: {r.status_code} {r.text}"
            np.testing.assert_allclose(np.asarray(r.json(), dtype=np.float32), want,
                                       atol=1e-4, rtol=1e-4)
    for answers in bad_answers:
        for r in answers:
            assert r.status_code == 400, r.text
            body = r.json()
            # TorchServe's own error body, as for a bad request served alone
            assert set(body) == set(alone.json()) and body["type"] == alone.json()["type"], \
                (body, alone.json())
            assert body["code"] == 400 and "BadRequestError" in body["message"], body
    log = server.model_log()
    # The bad rows really shared batches with good ones (else this test proves nothing).
    assert re.search(r"stack_boost: batch of [2-4] failed; [12] request",
                     log), log[-4000:]
    assert log.count("stack_boost: served by backend") == 1
