"""The boost handler around TorchServe's built-in image_classifier, against a real TorchServe.

Stock handler and boost handler serve the same eager model (model file + state dict); outputs
over HTTP agree, with batching on and two workers; bad requests get 4xx and the worker lives on.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import re

import pytest
from tsutil import BOOST_HANDLER, FAST, TorchServe, archive, assert_same_topk, image_bytes, write_config

pytestmark = [pytest.mark.server, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory, ys_cache, models):
    root = tmp_path_factory.mktemp("ts-image")
    ts = TorchServe(root, ys_cache)
    cfg_dir = root / "cfg"
    cfg_dir.mkdir()
    common = dict(serialized=models["cnn_state"], model_file=models["cnn_file"])
    archive(ts.store, "stock", handler="image_classifier", **common)
    ys = {"handler": "image_classifier", "input_shape": [1, 3, 224, 224], **FAST}
    archive(ts.store, "boosted", handler=str(BOOST_HANDLER), **common,
            config=write_config(cfg_dir / "boosted.yaml", yellowstone=ys, minWorkers=1,
                                maxWorkers=1))
    archive(ts.store, "batched", handler=str(BOOST_HANDLER), **common,
            config=write_config(cfg_dir / "batched.yaml", yellowstone=ys, batchSize=4,
                                maxBatchDelay=300, minWorkers=2, maxWorkers=2))
    # No input_shape: boosted from the first request's preprocessed batch.
    archive(ts.store, "lazy", handler=str(BOOST_HANDLER), **common,
            config=write_config(cfg_dir / "lazy.yaml",
                                yellowstone={"handler": "image_classifier", **FAST}))
    ts.register("stock.mar")
    ts.register("boosted.mar")
    try:
        yield ts
    finally:
        ts.stop()


def _stock(server, images):
    return [server.predict("stock", img).json() for img in images]


def test_boosted_image_classifier_matches_stock(server):
    images = [image_bytes(s, fmt) for s, fmt in ((1, "PNG"), (2, "JPEG"), (3, "PNG"))]
    stock = _stock(server, images)
    for img, want in zip(images, stock):
        r = server.predict("boosted", img)
        assert r.status_code == 200, r.text
        got = r.json()
        assert len(got) == 5  # image_classifier's own top-5 postprocess ran
        assert_same_topk(want, got)
    (info,) = server.describe("boosted")
    assert info["backend"] in ("onnxruntime", "openvino"), info
    assert info["handler"] == "image_classifier"
    assert info["preprocess"].startswith("fused: Resize([256]) -> CenterCrop([224, 224])"), info
    assert re.search(r"boosted: served by backend (onnxruntime|openvino)", server.model_log())
    if len(os.sched_getaffinity(0)) > 1:  # one worker: torch would have every core...
        # ...but the backend's own pool runs the model, so torch keeps one thread (no spinning)
        assert info["torch_threads"] == 1, info
        assert re.search(r"boosted: torch keeps 1 thread while \w+ serves", server.model_log())


def test_metrics_through_torchserve(server):
    server.predict("boosted", image_bytes(4))
    text = server.scrape()
    (info,) = server.describe("boosted")
    backend = info["backend"]
    assert re.search(rf'YellowstoneBackendInUse\{{[^}}]*Backend="{backend}"[^}}]*\}} 1', text), \
        text[-3000:]
    assert "YellowstoneInferenceTime" in text
    assert re.search(r"Yellowstone(Compile|Load)Time", text)


def test_not_an_image_is_a_client_error_and_worker_keeps_serving(server):
    r = server.predict("boosted", b"this is not an image at all")
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == 400
    assert "preprocess rejected the request" in body["message"]
    assert "UnidentifiedImageError" in body["message"]
    img = image_bytes(5)
    ok = server.predict("boosted", img)
    assert ok.status_code == 200
    assert_same_topk(server.predict("stock", img).json(), ok.json())


def test_batching_with_two_workers(server):
    server.register("batched.mar", workers=2)
    images = [image_bytes(10 + i, "PNG" if i % 2 else "JPEG") for i in range(12)]
    stock = _stock(server, images)
    with cf.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda img: server.predict("batched", img), images))
    for r, want in zip(responses, stock):
        assert r.status_code == 200, r.text
        assert_same_topk(want, r.json())
    workers = {}
    for _ in range(20):  # describe reaches one worker per call
        info = server.describe("batched")[0]
        workers[info["pid"]] = info
        if len(workers) == 2:
            break
    for info in workers.values():
        assert info["backend"] in ("onnxruntime", "openvino"), info
        assert info["batch_sizes"] == [1, 4]
        # minWorkers: 2 -> each worker gets its share of the cores, not all of them
        cores = len(os.sched_getaffinity(0))
        assert info["threads"] == max(1, cores // 2), info
        # ...and a worker that is the only one busy runs on all of them (follow_load)
        assert info["threads_alone"] == (cores if cores > 1 else None), info
    log = server.model_log()
    if cores > 1:
        wide = re.findall(rf"W-(\d+)-batched\S* MODEL_LOG - FusedImageModel: \w+ loaded again "
                          rf"with {cores} threads", log)
        assert len(set(wide)) == 2, log[-4000:]  # in each of the two workers
    # Served batch sizes come from the model's batchSize, so no request ever recompiles:
    # each worker boosted exactly once (the second one usually from the shared cache).
    assert len(re.findall(r"batched: served by backend", log)) == 2, log[-4000:]
    assert len(re.findall(r"batched: batch sizes 1\.\.4 warmed at load", log)) == 2, log[-4000:]
    assert re.search(r"batched: served by backend \w+ \(cache", log), log[-4000:]


def test_bad_request_in_a_batch_fails_alone(server):
    images = [image_bytes(30 + i) for i in range(3)]
    stock = _stock(server, images)
    bodies = [images[0], b"\x89PNG garbage", images[1], images[2]]
    with cf.ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda b: server.predict("batched", b), bodies))
    assert responses[1].status_code == 400, responses[1].text
    assert "preprocess rejected the request" in responses[1].json()["message"]
    for r, want in zip([responses[0], responses[2], responses[3]], stock):
        assert r.status_code == 200, r.text
        assert_same_topk(want, r.json())


def test_boost_on_first_request_without_input_shape(server):
    server.register("lazy.mar")
    img = image_bytes(42, "JPEG")
    r = server.predict("lazy", img)
    assert r.status_code == 200, r.text
    assert_same_topk(server.predict("stock", img).json(), r.json())
    (info,) = server.describe("lazy")
    assert info["backend"] in ("onnxruntime", "openvino"), info
