"""TorchServe's metrics API shows a runtime fallback and the recovery after it.

A TorchScript MLP is archived with ``yellowstone archive --precompile`` (so a compiled backend
serves, whatever a race on a loaded host would pick) over the tests' ``tensor_handler.py``, and
served by one worker with the stress harness's fault hook (``benchmarks/stress_faults/site``)
in its process: while the trigger file says ``raise``, every compiled call raises. Two failures
open the breaker, a request meanwhile is served by the framework, and once the fault is gone
the trial after the back-off closes it. The metrics API is scraped at each step:
``YellowstoneFallbacks`` by reason, ``YellowstoneRecoveries`` and ``YellowstoneBackendInUse``
(0 for the backend that no longer serves, not a stale 1).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from tsutil import FAST, TorchServe

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.onnxruntime]

NAME = "flaky"
HANDLER = Path(__file__).with_name("assets") / "tensor_handler.py"
SITE = Path(__file__).resolve().parents[3] / "benchmarks" / "stress_faults" / "site"
BACKOFF_S = 3.0
LINE = re.compile(r"^(Yellowstone\w+)\{([^}]*)\} (\S+)$")


def _precompiled(store: Path, root: Path, models) -> str:
    """Archive the MLP with a compiled artifact inside; the backend it serves on."""
    env = dict(os.environ, TMPDIR=str(root / "tmp"))
    env.pop("YELLOWSTONE_BACKEND", None)
    for attempt in range(3):
        env["YELLOWSTONE_CACHE_DIR"] = str(root / f"build-cache-{attempt}")
        subprocess.run(
            [sys.executable, "-m", "yellowstone.plugins.torchserve.archive", "--model-name", NAME,
             "--serialized-file", str(models["ts"]), "--handler", str(HANDLER),
             "--export-path", str(store), "--input-shape", "1,16", "--backends", "onnxruntime",
             "--time_budget_s", str(FAST["time_budget_s"]), "--validation_rounds", "1",
             "--max_runtime_failures", "2", "--breaker_backoff_s", str(BACKOFF_S),
             "--breaker_backoff_max_s", str(2 * BACKOFF_S), "--precompile", "-q", "-f"],
            check=True, capture_output=True, env=env, timeout=600)
        with zipfile.ZipFile(store / f"{NAME}.mar") as z:
            backend = json.loads(z.read("yellowstone_artifacts/yellowstone.json"))["backend"]
        if backend != "native":
            return backend
    pytest.skip("the framework won every boost here: no compiled call to fault")


@pytest.fixture(scope="module")
def server(tmp_path_factory, models):
    root = tmp_path_factory.mktemp("ts-s16-metrics")
    (root / "tmp").mkdir()
    fault = root / "fault"
    env = {"YS_STRESS_FAULT_FILE": str(fault),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(SITE), os.environ.get("PYTHONPATH")]))}
    ts = TorchServe(root, root / "server-cache", extra_env=env)
    try:
        backend = _precompiled(ts.store, root, models)
        ts.register(f"{NAME}.mar")
        yield ts, fault, backend
    finally:
        ts.stop()


def _scrape(ts) -> dict[str, dict[tuple, float]]:
    """This model's ``Yellowstone*`` lines: {name: {dimensions but ModelName, Level, Hostname: value}}."""
    out: dict[str, dict[tuple, float]] = {}
    for line in ts.scrape().splitlines():
        m = LINE.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        if labels.get("ModelName") != NAME:
            continue
        key = tuple(sorted((k, v) for k, v in labels.items() if k not in ("ModelName", "Level", "Hostname")))
        out.setdefault(m.group(1), {})[key] = float(m.group(3))
    return out


def _predict(ts, mlp_reference) -> None:
    x = np.random.default_rng().standard_normal((1, 16)).astype(np.float32)
    r = ts.predict(NAME, json.dumps(x[0].tolist()).encode())
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.array(r.json(), np.float32).reshape(1, -1), mlp_reference(x),
                               atol=1e-4, rtol=1e-4)


def test_metrics_show_the_runtime_fallback_and_the_recovery(server, mlp_reference):
    ts, fault, backend = server
    assert "fault hook armed" in ts.output()

    _predict(ts, mlp_reference)
    before = _scrape(ts)
    assert before["YellowstoneBackendInUse"][(("Backend", backend),)] == 1
    assert "YellowstoneFallbacks" not in before and "YellowstoneRecoveries" not in before

    fault.write_text("raise")
    try:
        for _ in range(3):  # 2 failures open the breaker; the third goes to the framework at once
            _predict(ts, mlp_reference)
        fallen = _scrape(ts)
    finally:
        fault.unlink()
    assert fallen["YellowstoneFallbacks"] == {(("Backend", backend), ("Reason", "runtime")): 2,
                                              (("Backend", backend), ("Reason", "breaker-open")): 1}
    assert fallen["YellowstoneBackendInUse"] == {(("Backend", backend),): 0, (("Backend", "native"),): 1}
    assert "YellowstoneRecoveries" not in fallen

    deadline = time.monotonic() + BACKOFF_S + 60
    while "YellowstoneRecoveries" not in _scrape(ts):  # the framework serves until the back-off is over
        assert time.monotonic() < deadline, "the breaker never closed"
        time.sleep(0.2)
        _predict(ts, mlp_reference)
    healed = _scrape(ts)
    assert healed["YellowstoneRecoveries"] == {(("Backend", backend),): 1}
    assert healed["YellowstoneBackendInUse"] == {(("Backend", backend),): 1, (("Backend", "native"),): 0}
    assert healed["YellowstoneFallbacks"][(("Backend", backend), ("Reason", "runtime"))] == 2
