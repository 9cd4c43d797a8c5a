"""``yellowstone archive`` and shipped artifacts, against a real TorchServe.

A precompiled archive loads without compiling in every worker; an archive built for other
hardware, a corrupt archive entry and a corrupt cache entry are each rejected with a warning and
a fallback metric, and the model still serves correct outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest
from tsutil import BOOST_HANDLER, FAST, TorchServe, archive, assert_same_topk, image_bytes, write_config

pytestmark = [pytest.mark.server, pytest.mark.slow]


def _archive_cli(args, env_extra):
    env = dict(os.environ, **env_extra)
    env.pop("YELLOWSTONE_BACKEND", None)
    return subprocess.run([sys.executable, "-m", "yellowstone.plugins.torchserve.archive", *args],
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, models):
    root = tmp_path_factory.mktemp("ts-archive")
    cache = root / "server-cache"  # this module's own cache, to corrupt it safely
    ts = TorchServe(root, cache)
    common = ["--serialized-file", str(models["cnn_state"]), "--model-file", str(models["cnn_file"]),
              "--handler", "image_classifier", "--export-path", str(ts.store),
              "--backends", FAST["backends"], "--time_budget_s", str(FAST["time_budget_s"])]
    proc = _archive_cli(["--model-name", "pre", *common, "--input-shape", "1,3,224,224",
                         "--precompile", "-q"],
                        {"YELLOWSTONE_CACHE_DIR": str(root / "build-cache"),
                         "TMPDIR": str(ts.tmp)})
    assert proc.returncode == 0, proc.stderr
    archive(ts.store, "stock", models["cnn_state"], "image_classifier",
            model_file=models["cnn_file"])
    ts.register("stock.mar")
    try:
        yield ts, cache
    finally:
        ts.stop()


def _stock_vs(ts, name, seeds=(1, 2)):
    for seed in seeds:
        img = image_bytes(seed)
        r = ts.predict(name, img)
        assert r.status_code == 200, r.text
        assert_same_topk(ts.predict("stock", img).json(), r.json())


def test_precompiled_archive_loads_in_every_worker_without_compiling(setup):
    ts, _ = setup
    with zipfile.ZipFile(ts.store / "pre.mar") as z:
        names = z.namelist()
        assert "yellowstone_artifacts/yellowstone.json" in names
        assert "artifact_dir: yellowstone_artifacts" in z.read("model-config.yaml").decode()
    ts.register("pre.mar", workers=2)
    _stock_vs(ts, "pre", seeds=(3, 4, 5, 6))
    log = ts.model_log()
    assert len(re.findall(r"pre: served by backend \w+ \(precompiled archive", log)) == 2, \
        log[-4000:]
    assert not re.search(r"pre: served by backend \w+ \(compiled here", log)
    info = ts.describe("pre")[0]
    assert info["cache"] == "artifact"
    metrics = ts.scrape()
    assert re.search(r'YellowstoneLoadTime\{[^}]*Backend="(onnxruntime|openvino)"[^}]*'
                     r'ModelName="pre"', metrics), metrics[-3000:]
    assert not re.search(r'YellowstoneCompileTime\{[^}]*ModelName="pre"', metrics)


def _exploded_copy(ts, name, edit):
    """Unpack pre.mar as model directory ``name``, apply ``edit`` to its artifact dir."""
    dst = ts.store / name
    with zipfile.ZipFile(ts.store / "pre.mar") as z:
        z.extractall(dst)
    manifest = dst / "MAR-INF" / "MANIFEST.json"
    data = json.loads(manifest.read_text())
    data["model"]["modelName"] = name
    manifest.write_text(json.dumps(data))
    edit(dst / "yellowstone_artifacts")
    return name


def _rehash(art):
    """Rewrite the artifact manifest after an edit (a consistent but different archive)."""
    m = json.loads((art / "MANIFEST.json").read_text())
    m["files"] = {rel: hashlib.sha256((art / rel).read_bytes()).hexdigest() for rel in m["files"]}
    (art / "MANIFEST.json").write_text(json.dumps(m))


def test_archive_for_other_hardware_recompiles_visibly(setup):
    ts, _ = setup

    def other_hardware(art):
        meta = json.loads((art / "yellowstone.json").read_text())
        meta["hardware"] = "0123456789abcdef"
        (art / "yellowstone.json").write_text(json.dumps(meta))
        _rehash(art)

    name = _exploded_copy(ts, "otherhw", other_hardware)
    ts.register(name)
    _stock_vs(ts, name)
    log = ts.model_log()
    assert re.search(r"artifact .* not used: artifact was compiled for hardware 0123456789abcdef",
                     log), log[-4000:]
    assert ts.describe(name)[0]["cache"] != "artifact"
    assert re.search(r'YellowstoneFallbacks\{[^}]*ModelName="otherhw"[^}]*Reason="artifact"|'
                     r'YellowstoneFallbacks\{[^}]*Reason="artifact"[^}]*ModelName="otherhw"',
                     ts.scrape())


def test_corrupt_archive_entry_is_rejected_not_a_crash_loop(setup):
    ts, _ = setup

    def corrupt(art):
        onnx = next(art.rglob("*.onnx"))
        data = bytearray(onnx.read_bytes())
        data[len(data) // 2] ^= 0xFF
        onnx.write_bytes(bytes(data))

    name = _exploded_copy(ts, "corruptmar", corrupt)
    ts.register(name)
    _stock_vs(ts, name)
    log = ts.model_log()
    assert re.search(r"corruptmar.*corrupt entry: artifacts/\S+ hash mismatch|"
                     r"corrupt entry: artifacts/\S+ hash mismatch", log), log[-4000:]
    assert ts.describe(name)[0]["backend"] in ("onnxruntime", "openvino")
    # One worker load, not a restart loop.
    assert len(re.findall(r"corruptmar: served by backend", log)) == 1


def test_corrupt_cache_entry_is_discarded_and_rebuilt(setup, models, tmp_path):
    ts, cache = setup
    config = write_config(tmp_path / "c.yaml", yellowstone={
        "handler": "image_classifier", "input_shape": [1, 3, 224, 224], **FAST})
    for name in ("cached1", "cached2"):
        archive(ts.store, name, models["cnn_state"], str(BOOST_HANDLER),
                model_file=models["cnn_file"], config=config)
    entries = [p for p in (cache / "artifacts").glob("*/*") if p.is_dir()]
    if not entries:  # run alone: fill the cache first
        ts.register("cached1.mar")
        entries = [p for p in (cache / "artifacts").glob("*/*") if p.is_dir()]
    assert entries, "the first load should have filled the cache"
    for entry in entries:
        for f in entry.rglob("*"):
            if f.is_file() and f.name != "MANIFEST.json":
                f.write_bytes(f.read_bytes() + b"tampered")
    ts.register("cached2.mar")
    _stock_vs(ts, "cached2")
    log = ts.model_log()
    assert "discarding cache entry" in log and "corrupt entry" in log, log[-4000:]
    assert ts.describe("cached2")[0]["backend"] in ("onnxruntime", "openvino")


def test_unknown_option_is_rejected_at_archive_time(tmp_path, models):
    cfg = write_config(tmp_path / "bad.yaml", yellowstone={"handler": "image_classifier",
                                                          "backend": "onnxruntime"})
    proc = _archive_cli(["--model-name", "bad", "--serialized-file", str(models["cnn_state"]),
                         "--model-file", str(models["cnn_file"]), "--config-file", str(cfg),
                         "--export-path", str(tmp_path / "store")], {"TMPDIR": str(tmp_path)})
    assert proc.returncode == 2
    assert "unknown option(s) backend" in proc.stderr
    assert "backends" in proc.stderr  # the valid options are listed
    assert not (tmp_path / "store" / "bad.mar").exists()
    shutil.rmtree(tmp_path / "store", ignore_errors=True)
