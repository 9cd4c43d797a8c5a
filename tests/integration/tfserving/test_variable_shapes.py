"""Variable shapes beyond the batch: a text model with input_ids and attention_mask of shape [-1, -1].

One server serves the same SavedModel as ``padded`` (its ``batching_params.pbtxt`` sets
``pad_variable_length_inputs: true``) and ``plain`` (batching without padding), with the shim on
(policy ``always``) and batching on. Requests of any length are served by the shim (its artifact
keeps the length dynamic), concurrent requests of unequal lengths are merged into one padded
batch only for ``padded`` (each answer sliced back to its own length) and kept apart for
``plain``; a length outside what the shim was validated for falls back to TensorFlow (reason
``shape``); the ``raw`` signature, not boosted, is TensorFlow's at any length. Every answer is
compared with TensorFlow's own signature call.
"""

from __future__ import annotations

import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from tfs_server import TFServer, build_model, importorskip_client, model_config, predict

pytestmark = [pytest.mark.server, pytest.mark.tensorflow, pytest.mark.openvino, pytest.mark.onnxruntime]

tf, grpc, requests = importorskip_client()

ATOL, RTOL = 1e-4, 1e-3
VOCAB = 50
METRICS = "/monitoring/prometheus/metrics"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfs-text")
    build_model("text", root / "plain" / "1")
    shutil.copytree(root / "plain", root / "padded")
    (root / "padded" / "1" / "batching_params.pbtxt").write_text(
        "max_batch_size { value: 8 }\nbatch_timeout_micros { value: 500000 }\n"
        "max_enqueued_batches { value: 100 }\npad_variable_length_inputs: true\n"
    )
    (root / "batching.config").write_text(
        "max_batch_size { value: 8 }\nbatch_timeout_micros { value: 200000 }\n"
        "max_enqueued_batches { value: 100 }\nnum_batch_threads { value: 1 }\n"
    )
    (root / "monitoring.config").write_text("prometheus_config { enable: true }\n")
    (root / "models.config").write_text(model_config(*((m, root / m) for m in ("plain", "padded"))))
    with TFServer(root, f"--model_config_file={root / 'models.config'}", "--enable_batching",
                  f"--batching_parameters_file={root / 'batching.config'}",
                  "--enable_per_model_batching_parameters",
                  f"--monitoring_config_file={root / 'monitoring.config'}", "--max_num_load_retries=0",
                  "--file_system_poll_wait_seconds=0", "--yellowstone_shim=always",
                  unset=("YELLOWSTONE_BACKEND", "YELLOWSTONE_BACKENDS"), timeout_s=400) as srv:
        yield srv


@pytest.fixture(scope="module")
def reference(server):
    loaded = tf.saved_model.load(str(server.root / "plain" / "1"))

    def run(feeds, signature="serving_default"):
        out = loaded.signatures[signature](**{k: tf.constant(v) for k, v in feeds.items()})
        return {k: v.numpy() for k, v in out.items()}

    return run


def _feeds(rng, batch, length):
    ids = rng.integers(0, VOCAB, (batch, length)).astype(np.int32)
    mask = np.ones((batch, length), np.int32)
    for row in range(batch):
        mask[row, rng.integers(1, length + 1):] = 0  # padded rows, as a tokenizer makes them
    return {"input_ids": ids, "attention_mask": mask}


def _predict(channel, model, feeds, signature=""):
    return predict(channel, model, feeds, signature)


def _check(got, want, atol=ATOL, rtol=RTOL):
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].shape == want[k].shape, (k, got[k].shape, want[k].shape)
        np.testing.assert_allclose(got[k], want[k], atol=atol, rtol=rtol)


def _concurrently(server, model, all_feeds):
    outs, errors = [None] * len(all_feeds), []
    start = threading.Barrier(len(all_feeds))

    def client(i):
        try:
            start.wait(30)
            outs[i] = _predict(server.channel, model, all_feeds[i])
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(all_feeds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors, errors
    return outs


def _series(server, name, **labels):
    page = requests.get(server.rest + METRICS, timeout=30).text
    total = 0.0
    for m in re.finditer(rf"^{re.escape(name)}\{{([^}}]*)\}} (\S+)$", page, re.M):
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


def test_the_shim_keeps_the_length_dynamic(server):
    log = server.log.read_text()
    for model in ("plain", "padded"):
        m = re.search(rf"{model} v1 \[serving_default\]: served by the shim \((\w+), C\) from (\S+): ", log)
        assert m, log[-3000:]
        shim = (Path(m.group(2)) / "shim.txt").read_text()
        assert re.search(r"^input input_ids \S+ int32 \d+ 2 -1 -1$", shim, re.M), shim
        assert re.search(r"^output tokens \S+ float32 \d+ 3 -1 -1 4$", shim, re.M), shim


@pytest.mark.parametrize("length", [1, 3, 17, 64])
def test_any_length_is_served_by_the_shim_over_both_apis(server, reference, length):
    rng = np.random.default_rng()
    feeds = _feeds(rng, 2, length)
    want = reference(feeds)
    _check(_predict(server.channel, "plain", feeds), want)
    rows = [{k: v[i].tolist() for k, v in feeds.items()} for i in range(2)]
    r = requests.post(f"{server.rest}/v1/models/padded:predict", json={"instances": rows}, timeout=120)
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    np.testing.assert_allclose(np.array([p["tokens"] for p in preds]), want["tokens"], atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(np.array([p["pooled"] for p in preds]), want["pooled"], atol=ATOL, rtol=RTOL)
    assert "cannot run this request" not in server.log.read_text()  # the shim served every one


def test_unequal_lengths_share_a_padded_batch_and_get_their_own_lengths_back(server, reference):
    rng = np.random.default_rng()
    before = _series(server, "yellowstone_tfserving_batches_total", model="padded", tasks="many")
    lengths = [3, 9, 5, 14, 2, 7]
    feeds = [_feeds(rng, 1, n) for n in lengths]
    for feed, out in zip(feeds, _concurrently(server, "padded", feeds)):
        _check(out, reference(feed))  # tokens [1, n, 4]: sliced back from the batch's longest
    assert _series(server, "yellowstone_tfserving_batches_total", model="padded", tasks="many") > before


def test_unequal_lengths_without_padding_are_never_merged(server, reference):
    rng = np.random.default_rng()
    lengths = [3, 9, 5, 3, 9, 5]
    feeds = [_feeds(rng, 1, n) for n in lengths]
    for feed, out in zip(feeds, _concurrently(server, "plain", feeds)):
        _check(out, reference(feed))
    log = server.log.read_text()
    assert "padding is turned off" not in log and "FAILED_PRECONDITION" not in log


def test_a_length_past_the_validated_range_falls_back_to_tensorflow(server, reference):
    feeds = _feeds(np.random.default_rng(), 1, 600)
    _check(_predict(server.channel, "plain", feeds), reference(feeds))
    log = server.log.read_text()
    assert re.search(r"plain v1 \[serving_default\]: the shim \(\w+\) cannot run this request \(input "
                     r"'\w+' has dim1=600, the artifact was validated for 1\.\.512\); "
                     r"TensorFlow serves it", log)
    backend = re.search(r"plain v1 \[serving_default\]: served by the shim \((\w+), C\)", log).group(1)
    assert _series(server, "yellowstone_fallbacks_total", model="plain", backend=backend, reason="shape") >= 1


@pytest.mark.parametrize("length", [4, 700])
def test_a_signature_tensorflow_serves_takes_any_length(server, reference, length):
    feeds = _feeds(np.random.default_rng(), 2, length)
    _check(_predict(server.channel, "plain", feeds, "raw"), reference(feeds, "raw"), atol=1e-5, rtol=1e-5)
