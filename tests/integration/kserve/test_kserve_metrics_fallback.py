"""KServe's ``/metrics`` shows a runtime fallback and the recovery after it.

The predictor serves a TorchScript MLP from a shipped ONNX Runtime artifact (so a compiled
backend serves, whatever a race on a loaded host would pick), with the stress harness's fault
hook (``benchmarks/stress_faults/site``) in its process: while the trigger file says ``raise``,
every compiled call raises. Two failures open the breaker, a request meanwhile is served by the
framework, and once the fault is gone the trial after the back-off closes it. ``/metrics`` is
scraped at each step: the fallbacks by reason, the recoveries and the backend-in-use gauge.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from ksserver import FAST, start_server, stop_server

pytestmark = [pytest.mark.server, pytest.mark.onnxruntime, pytest.mark.timeout(600)]

NAME = "mlp"
SITE = Path(__file__).resolve().parents[3] / "benchmarks" / "stress_faults" / "site"
BACKOFF_S = 3.0


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """/mnt/models with an artifact a compiled backend serves (a boost native won is redone)."""
    import ksmodels
    import torch

    import yellowstone

    d = tmp_path_factory.mktemp("kserve-s16-metrics")
    path = ksmodels.write_mlp_torchscript(d / "models")
    for attempt in range(3):
        boosted = yellowstone.compile(str(path), torch.randn(2, 16), backends="onnxruntime",
                                      time_budget_s=0.05, validation_rounds=1,
                                      cache_dir=str(d / f"compile-cache-{attempt}"))
        if boosted.backend != "native":
            boosted.save(str(d / "models" / "yellowstone"))
            return d, boosted.backend
    pytest.skip("the framework won every boost here: no compiled call to fault")


@pytest.fixture(scope="module")
def server(shipped):
    root, _ = shipped
    fault = root / "fault"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("YS_STRESS_FAULT_FILE", str(fault))
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(SITE), os.environ.get("PYTHONPATH")])))
        srv = start_server(NAME, root / "models", root, *FAST, "--max_runtime_failures", "2",
                           "--breaker_backoff_s", str(BACKOFF_S), "--breaker_backoff_max_s",
                           str(2 * BACKOFF_S), cache_dir=root / "server-cache")
    yield srv, fault
    stop_server(srv)


def _scrape(server) -> dict[str, dict[tuple, float]]:
    """The ``yellowstone_*`` samples of the one model served: {sample name: {labels but model: value}}."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{server.base_url}/metrics", timeout=30).text
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("yellowstone_") and "model" in s.labels:
                assert s.labels["model"] == NAME, s  # KServe's name for the model, as clients use
                key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "model"))
                out.setdefault(s.name, {})[key] = s.value
    return out


def _predict(server) -> str:
    """One V1 request, checked against the framework; the backend that answered it."""
    import ksmodels
    import requests
    import torch

    x = np.random.default_rng().standard_normal((3, 16)).astype(np.float32)
    with torch.inference_mode():
        want = ksmodels.mlp()(torch.from_numpy(x)).numpy()
    resp = requests.post(f"{server.base_url}/v1/models/{NAME}:predict",
                         json={"instances": x.tolist()}, timeout=60)
    assert resp.status_code == 200, resp.text
    np.testing.assert_allclose(np.array(resp.json()["predictions"], np.float32), want, atol=1e-4)
    return resp.headers["x-yellowstone-backend"]


def test_metrics_show_the_runtime_fallback_and_the_recovery(server, shipped):
    srv, fault = server
    _, backend = shipped
    assert "fault hook armed" in srv.log_text()
    fallbacks, recoveries, in_use = ("yellowstone_fallbacks_total", "yellowstone_recoveries_total",
                                     "yellowstone_backend_in_use")

    assert _predict(srv) == backend
    before = _scrape(srv)
    assert before[in_use][(("backend", backend),)] == 1
    assert fallbacks not in before and recoveries not in before

    fault.write_text("raise")
    try:
        answered = [_predict(srv) for _ in range(3)]  # 2 failures open the breaker
        fallen = _scrape(srv)
    finally:
        fault.unlink()
    assert fallen[fallbacks] == {(("backend", backend), ("reason", "runtime")): 2,
                                 (("backend", backend), ("reason", "breaker-open")): 1}
    assert fallen[in_use] == {(("backend", backend),): 0, (("backend", "native"),): 1}
    assert recoveries not in fallen
    assert answered == ["native"] * 3  # the first too: it failed and the framework answered

    deadline = time.monotonic() + BACKOFF_S + 60
    while (answered := _predict(srv)) == "native":  # breaker-open until the back-off is over
        assert time.monotonic() < deadline, "the breaker never closed"
        time.sleep(0.2)
    assert answered == backend
    healed = _scrape(srv)
    assert healed[recoveries] == {(("backend", backend),): 1}
    assert healed[in_use] == {(("backend", backend),): 1, (("backend", "native"),): 0}
    assert healed[fallbacks][(("backend", backend), ("reason", "runtime"))] == 2
    assert "recovered" in srv.log_text()
