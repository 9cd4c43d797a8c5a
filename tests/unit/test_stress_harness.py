"""The stress harness's pure parts: hostile request kinds, the classifier, metrics, the table.

No server is started: requests are checked as bytes, answers are canned.
"""

from __future__ import annotations

import json
import os
import random
import socket
import stat
import threading

import numpy as np
import pytest

from benchmarks import stress
from benchmarks.stress import Record, classify, summarize
from benchmarks.stress_faults import hostile, report, tamper
from benchmarks.stress_faults.hostile import GOOD, ModelData, Reply, Request


@pytest.fixture
def model() -> ModelData:
    rng = np.random.default_rng()
    return ModelData(name="mlp", input_name="x", output_name="y",
                     x=rng.standard_normal((8, 16)).astype(np.float32),
                     y=rng.standard_normal((8, 4)).astype(np.float32))


def _json_ok(body: bytes) -> bool:
    try:
        json.loads(body)
        return True
    except (ValueError, RecursionError):
        return False


# -- request generators ----------------------------------------------------------------------
@pytest.mark.parametrize("proto", ["torchserve-rest", "kserve-rest", "tfserving-rest"])
def test_rest_kinds_are_malformed_as_named(proto, model):
    p = hostile.PROTOCOLS[proto](model)
    rng = random.Random(3)
    reqs = {k: p.bad(k, rng) for k in p.kinds}
    for kind, req in reqs.items():
        assert req.kind == kind and not req.good and req.expect is None
        assert req.transport == "rest"
    assert not _json_ok(reqs["malformed_json"].body)
    assert reqs["empty_body"].body == b""
    trunc = reqs["truncated_body"]
    assert trunc.send_bytes is not None and 0 < trunc.send_bytes < len(trunc.body)
    assert _json_ok(trunc.body) and not _json_ok(trunc.body[:trunc.send_bytes])
    assert reqs["bad_content_length"].content_length not in (None, str(len(reqs["bad_content_length"].body)))
    assert hostile.UNKNOWN_MODEL in reqs["unknown_model"].path
    assert model.name not in reqs["unknown_model"].path.replace(hostile.UNKNOWN_MODEL, "")
    deep = reqs["deep_nesting"].body
    assert deep.count(b"[") >= hostile.NESTING - 1 and not _json_ok(deep)  # RecursionError
    assert b"null" in reqs["non_numeric"].body
    if proto == "tfserving-rest":  # errors in TF Serving alone; the others take these values
        assert b"1e400" in reqs["inf_1e400"].body
        assert json.loads(reqs["inf_1e400"].body.decode()) is not None  # parses, to inf
        assert b"true" in reqs["booleans"].body
    else:
        assert not {"inf_1e400", "booleans"} & set(p.kinds)
    huge = reqs["huge_dims"].body
    assert len(huge) > 100_000 or str(hostile.HUGE_DIM).encode() in huge


def test_kserve_rest_shapes_and_dtypes(model):
    p = hostile.KServeRest(model)
    rng = random.Random(0)

    def first_input(kind):
        return json.loads(p.bad(kind, rng).body)["inputs"][0]

    assert first_input("wrong_shape")["shape"] == [1, 15]
    assert first_input("wrong_dtype")["datatype"] == "INT64"
    assert first_input("negative_dims")["shape"][0] < 0
    assert first_input("huge_dims")["shape"] == [hostile.HUGE_DIM, hostile.HUGE_DIM]
    mismatch = first_input("content_mismatch")
    assert np.prod(mismatch["shape"]) != len(mismatch["data"])
    assert json.loads(p.bad("missing_input", rng).body) == {"inputs": []}
    assert all(v is None for v in first_input("non_numeric")["data"])


def test_good_requests_carry_the_framework_answer(model):
    rng = random.Random(1)
    ts = hostile.TorchServeRest(model).good(rng)
    row = np.asarray(json.loads(ts.body), np.float32)
    i = int(np.argmin(np.abs(model.x - row).sum(1)))
    np.testing.assert_array_equal(row, model.x[i])
    np.testing.assert_array_equal(ts.expect, model.y[i])
    for _ in range(10):
        req = hostile.TfsRest(model).good(rng)
        x = np.asarray(json.loads(req.body)["instances"], np.float32)
        assert req.good and req.expect.shape == (len(x), 4) and 1 <= len(x) <= 4


def test_request_mix_follows_the_bad_fraction(model):
    p = hostile.KServeRest(model)
    rng = random.Random(5)
    kinds = [p.request(rng, 0.2).kind for _ in range(2000)]
    bad = sum(k != GOOD for k in kinds)
    assert 300 < bad < 500
    assert set(kinds) - {GOOD} == set(p.kinds)  # every kind shows up
    assert all(p.request(rng, 0.0).good for _ in range(50))


def test_kserve_grpc_kinds_are_serialized_as_named(model):
    pytest.importorskip("kserve")
    pb = hostile._kserve_pb()
    p = hostile.KServeGrpc(model)
    rng = random.Random(0)

    def parsed(kind):
        return pb.ModelInferRequest.FromString(p.bad(kind, rng).body)

    assert list(parsed("wrong_shape").inputs[0].shape) == [1, 15]
    assert parsed("wrong_dtype").inputs[0].datatype == "FP64"
    assert not parsed("missing_input").inputs
    assert parsed("unknown_model").model_name == hostile.UNKNOWN_MODEL
    assert parsed("negative_dims").inputs[0].shape[0] < 0
    huge = parsed("huge_dims")
    assert list(huge.inputs[0].shape) == [hostile.HUGE_DIM] * 2 and len(huge.raw_input_contents[0]) == 64
    assert len(parsed("content_mismatch").raw_input_contents[0]) == 7
    assert p.bad("empty_body", rng).body == b""
    with pytest.raises(Exception):  # noqa: B017 - any protobuf decode error
        pb.ModelInferRequest.FromString(p.bad("malformed_proto", rng).body)
    good = p.good(rng)
    msg = pb.ModelInferRequest.FromString(good.body)
    x = np.frombuffer(msg.raw_input_contents[0], np.float32).reshape(list(msg.inputs[0].shape))
    assert good.expect.shape == (len(x), 4)


# -- classifier ------------------------------------------------------------------------------
def _good(model, codec="v2", n=2) -> Request:
    return Request(kind=GOOD, transport="rest", codec=codec, path="/", expect=model.y[:n])


def _v2_body(arr) -> bytes:
    return json.dumps({"outputs": [{"name": "y", "shape": list(arr.shape), "datatype": "FP32",
                                    "data": arr.ravel().tolist()}]}).encode()


def test_classify_good_requests(model):
    req = _good(model)
    assert classify(req, Reply(200, _v2_body(model.y[:2]))) == "ok"
    assert classify(req, Reply(200, _v2_body(model.y[:2] + 1e-2))) == "wrong"
    assert classify(req, Reply(200, _v2_body(model.y[:1]))) == "wrong"  # wrong shape
    assert classify(req, Reply(200, b"not json")) == "wrong"
    assert classify(req, Reply(500, b"{}")) == "5xx"
    assert classify(req, Reply(503, b"{}")) == "5xx"
    assert classify(req, Reply(400, b"{}")) == "4xx"
    assert classify(req, Reply(None, b"", "timeout")) == "no_answer"
    v1 = _good(model, "v1")
    assert classify(v1, Reply(200, json.dumps({"predictions": model.y[:2].tolist()}).encode())) == "ok"
    ts = Request(kind=GOOD, transport="rest", codec="ts", path="/", expect=model.y[0])
    assert classify(ts, Reply(200, json.dumps(model.y[0].tolist()).encode())) == "ok"


def test_classify_bad_requests_and_grpc_codes():
    bad = Request(kind="wrong_shape", transport="rest", codec="v2", path="/")
    assert classify(bad, Reply(400)) == "4xx"
    assert classify(bad, Reply(404)) == "4xx"
    assert classify(bad, Reply(200, b"{}")) == "accepted"
    assert classify(bad, Reply(500)) == "5xx"
    assert classify(bad, Reply(None, b"", "connection closed without an answer")) == "no_answer"
    g = Request(kind="huge_dims", transport="grpc", codec="kserve_grpc", path="/m")
    assert classify(g, Reply("INVALID_ARGUMENT")) == "4xx"
    assert classify(g, Reply("NOT_FOUND")) == "4xx"
    assert classify(g, Reply("FAILED_PRECONDITION")) == "4xx"
    for code in ("INTERNAL", "UNKNOWN", "UNAVAILABLE", "UNIMPLEMENTED"):
        assert classify(g, Reply(code)) == "5xx", code
    assert classify(g, Reply("OK", b"")) == "accepted"


def test_summarize_counts_lost_and_outage():
    recs = [Record(0.0, 0.1, "p", GOOD, "ok"), Record(0.2, 0.3, "p", GOOD, "5xx", "500"),
            Record(0.3, 0.4, "p", GOOD, "no_answer", "timeout"), Record(0.4, 3.0, "p", GOOD, "ok"),
            Record(0.5, 0.6, "p", "wrong_shape", "4xx"), Record(0.6, 0.7, "p", "booleans", "accepted"),
            Record(0.7, 0.8, "p", "truncated_body", "no_answer", "closed")]
    s = summarize(recs, 0.0, 4.0)
    assert (s["sent"], s["good"], s["good_ok"], s["lost"]) == (7, 4, 2, 2)
    assert (s["bad"], s["bad_4xx"]) == (3, 1)
    assert s["lost_by"] == {"5xx": 1, "no_answer": 1}
    assert s["bad_not_4xx"] == {"p:booleans": {"accepted": 1}, "p:truncated_body": {"no_answer": 1}}
    assert s["outage_s"] == pytest.approx(2.9)  # 0.1 -> 3.0 without a correct answer
    assert s["p99_ms"] > s["p50_ms"] > 0
    empty = summarize([], 0.0, 1.0)
    assert empty["sent"] == 0 and empty["p99_ms"] is None


# -- metrics, table, README ------------------------------------------------------------------
def test_metrics_parsing_both_spellings():
    text = "\n".join([
        "# HELP yellowstone_fallbacks_total yellowstone counter",
        'yellowstone_fallbacks_total{backend="onnxruntime",model="mlp",reason="runtime"} 3.0',
        'yellowstone_fallbacks_total{backend="onnxruntime",model="mlp",reason="breaker-open"} 10.0',
        'YellowstoneFallbacks{Backend="openvino",Reason="deadline",ModelName="m",Level="Model"} 2.0',
        'yellowstone_backend_in_use{backend="native",model="mlp"} 1.0',
        'yellowstone_backend_in_use{backend="onnxruntime",model="mlp"} 0.0',
        "unrelated_total 5"])
    assert stress.by_label(text, stress.FALLBACK_NAMES, "reason") == {
        "runtime": 3.0, "breaker-open": 10.0, "deadline": 2.0}
    assert [lab["backend"] for lab, v in stress.metric_samples(text, stress.IN_USE_NAMES) if v] == ["native"]
    assert stress.by_label(None, stress.FALLBACK_NAMES, "reason") == {}
    assert stress.counter_delta({"runtime": 3.0}, {"runtime": 5.0, "deadline": 1.0}) == {
        "runtime": 2.0, "deadline": 1.0}
    assert stress.counter_delta({"runtime": 9.0}, {"runtime": 2.0}) == {"runtime": 2.0}  # reset


def _row(**kw):
    row = {"server": "kserve", "phase": "raise", "sent": 100, "good": 80, "good_ok": 78, "bad": 20,
           "bad_4xx": 19, "lost": 2, "p50_ms": 4.24, "p99_ms": 151.0, "rss_before_mib": 900.4,
           "rss_after_mib": 911.0, "fallbacks": {"runtime": 3.0, "breaker-open": 40.0},
           "note": "a | b", "bad_not_4xx": {"kserve-rest:booleans": {"accepted": 1}}}
    row.update(kw)
    return row


def test_render_table_one_row_per_phase():
    table = report.render_table([_row(), _row(phase="kill", fallbacks=None, p99_ms=None,
                                       rss_after_mib=None)])
    lines = table.strip().splitlines()
    assert len(lines) == 4 and lines[0].startswith("| server | phase | sent |")
    assert all(line.count("|") == lines[0].count("|") for line in lines)  # "a | b" escaped
    assert "| 78/80 | 19/20 | 2 | 4.2 / 151 | 900 → 911 | breaker-open 40, runtime 3 |" in lines[2]
    assert "| n/a |" in lines[3] and "/ - |" in lines[3] and "→ - |" in lines[3]


def test_markdown_names_machine_and_failing_kinds(tmp_path):
    data = {"machine": {"cpu_model": "AMD EPYC", "family": 25, "model": 17,
                        "microarchitecture": "Zen 4", "cpus": 2, "isa": ["avx2", "avx512f"],
                        "loadavg_at_start": [5.1, 4.0, 3.0]},
            "settings": {"clients": 8, "seconds": 5.0, "bad_fraction": 0.2, "call_timeout_s": 2.0,
                         "breaker_backoff_s": 5.0, "quick": True},
            "rows": [_row(), _row(phase="kill", bad_not_4xx={"kserve-grpc:x": {"5xx": 9}})],
            "servers": {"tfserving": {"error": "RuntimeError: boom\nmore"}}}
    md = report.render_markdown(data)
    assert "family 25 model 17 = Zen 4" in md and "avx2/avx512f" in md and "quick mode" in md
    assert "`kserve-rest:booleans` accepted 1" in md
    assert "kserve-grpc:x" not in md  # the kill phase's outage is not a hostile-input failure
    assert "tfserving did not finish: RuntimeError: boom" in md
    readme = tmp_path / "README.md"
    readme.write_text(f"a\n{report.README_BEGIN}\nold\n{report.README_END}\nz\n")
    assert report.update_readme(md, readme)
    text = readme.read_text()
    assert "old" not in text and md in text and text.startswith("a\n") and text.endswith("z\n")


def test_parse_args_quick_and_phases():
    settings, _ = stress.parse_args(["--quick", "--servers", "kserve",
                                     "--phases", "baseline,tamper:decision_empty+symlink_entry"])
    assert settings.seconds == 5.0 and settings.servers == ["kserve"]
    assert settings.phases == ["baseline", "tamper"]
    assert settings.tamper_kinds == ["decision_empty", "symlink_entry"]
    assert stress.parse_args([])[0].seconds == 45.0
    with pytest.raises(SystemExit):
        stress.parse_args(["--phases", "explode"])


# -- raw HTTP framing against a canned local server ------------------------------------------
def _one_shot_server(answer: bytes):
    """A loopback socket that reads what comes, answers ``answer``, closes; returns (addr, got)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    got = []

    def serve():
        conn, _ = sock.accept()
        with conn:
            conn.settimeout(2)
            data = b""
            try:
                while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < 5:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
            got.append(data)
            if answer:
                conn.sendall(answer)
        sock.close()

    threading.Thread(target=serve, daemon=True).start()
    return sock.getsockname(), got


def test_send_http_framing_and_parsing():
    addr, got = _one_shot_server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 9\r\n\r\n{\"e\": 1}x")
    req = Request(kind="bad_content_length", transport="rest", codec="v2", path="/v2/x",
                  body=b'{"a": 1}', content_length="-1")
    reply = hostile.send_http(addr, req, 5)
    assert reply.status == 400 and reply.body == b'{"e": 1}x'
    assert b"Content-Length: -1\r\n" in got[0] and got[0].endswith(b'{"a": 1}')
    addr, got = _one_shot_server(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    trunc = Request(kind="truncated_body", transport="rest", codec="v2", path="/",
                    body=b"0123456789", send_bytes=5)
    reply = hostile.send_http(addr, trunc, 5)
    assert reply.status == 200 and reply.body == b"abcde"
    assert got[0].endswith(b"\r\n\r\n01234") and b"Content-Length: 10" in got[0]
    addr, _ = _one_shot_server(b"")
    reply = hostile.send_http(addr, trunc, 5)
    assert reply.status is None and reply.error


# -- cache tampering -------------------------------------------------------------------------
def _fake_cache(root):
    entry = root / "artifacts" / "ab" / ("ab" + "0" * 62)
    (entry / "artifacts").mkdir(parents=True)
    (entry / "artifacts" / "model.onnx").write_bytes(os.urandom(4096))
    (entry / "MANIFEST.json").write_text(json.dumps(
        {"key": "k", "files": {"artifacts/model.onnx": "0" * 64}, "mac": "m"}))
    (root / "decisions").mkdir()
    (root / "decisions" / "k.json").write_text('{"key": "k", "mac": "m"}')
    os.chmod(root, 0o700)
    return entry


def test_tamper_kinds(tmp_path):
    import hashlib

    root = tmp_path / "cache"
    entry = _fake_cache(root)
    before = (entry / "artifacts" / "model.onnx").read_bytes()
    tamper.tamper("artifact_rehash", root)
    after = (entry / "artifacts" / "model.onnx").read_bytes()
    manifest = json.loads((entry / "MANIFEST.json").read_text())
    assert after != before and len(after) == len(before)
    assert manifest["files"]["artifacts/model.onnx"] == hashlib.sha256(after).hexdigest()
    assert manifest["mac"] == "m"  # left as it was: only the MAC can tell
    tamper.tamper("decision_empty", root)
    assert json.loads((root / "decisions" / "k.json").read_text()) == {}
    tamper.tamper("decision_list", root)
    assert json.loads((root / "decisions" / "k.json").read_text()) == [1, 2]
    tamper.tamper("symlink_entry", root)
    assert entry.is_symlink() and (entry / "MANIFEST.json").exists()
    assert not str(entry.resolve()).startswith(str(root.resolve()) + os.sep)
    tamper.tamper("group_writable_root", root)
    assert stat.S_IMODE(root.stat().st_mode) & 0o020
    tamper.restore("group_writable_root", root)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert set(tamper.KINDS) == set(tamper.TAMPERS)


def test_fault_switch_and_hook(tmp_path, monkeypatch):
    """The site hook raises or hangs a wrapped call while the trigger file says so."""
    import importlib.util
    from pathlib import Path

    site = Path(stress.__file__).parent / "stress_faults" / "site" / "sitecustomize.py"
    spec = importlib.util.spec_from_file_location("ys_stress_site_under_test", site)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.delenv("YS_STRESS_FAULT_FILE", raising=False)
    spec.loader.exec_module(mod)  # no variable: installs nothing

    class Compiled:
        def run(self, feeds):
            return ["ran", feeds]

    class FakeBackend:
        def run(self):
            return "not wrapped"

    fake = type(os)("yellowstone.backends.fake")
    Compiled.__module__ = FakeBackend.__module__ = fake.__name__
    fake.Compiled, fake.FakeBackend = Compiled, FakeBackend
    switch = stress.FaultSwitch(tmp_path / "fault")
    assert mod._patch_classes(fake, str(switch.path)) == ["Compiled"]
    assert mod._patch_classes(fake, str(switch.path)) == []  # never twice
    assert Compiled().run(1) == ["ran", 1]
    switch.set("raise")
    with pytest.raises(RuntimeError, match="injected fault"):
        Compiled().run(1)
    switch.set("hang 0.2")
    assert Compiled().run(2) == ["ran", 2]
    switch.clear()
    assert not switch.path.exists() and Compiled().run(3) == ["ran", 3]
    assert mod._wanted("yellowstone.backends.openvino") and mod._wanted(mod.SHIM)
    assert not mod._wanted("yellowstone.backends.native") and not mod._wanted("yellowstone.boosted")
