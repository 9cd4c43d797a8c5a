"""The TF Serving Prometheus page shows a runtime fallback of the shim and the recovery after it.

The server serves the tests' small Keras SavedModel on the shim (policy ``always``), Prometheus
on, with the stress harness's fault hook (``benchmarks/stress_faults/site``) in its process:
while the trigger file says ``raise``, every shim call raises. Two failures open the breaker, a
request meanwhile is answered by TensorFlow, and once the fault is gone the trial after the
back-off closes it. The page is scraped at each step: the fallbacks by reason, the recoveries
and the backend-in-use gauge. Every answer is compared with TensorFlow's own signature call.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from tfs_server import TFServer, build_model, importorskip_client, predict

pytestmark = [pytest.mark.server, pytest.mark.tensorflow, pytest.mark.openvino, pytest.mark.onnxruntime]

tf, grpc, requests = importorskip_client()

NAME = "keras"
METRICS = "/monitoring/prometheus/metrics"
SITE = Path(__file__).resolve().parents[3] / "benchmarks" / "stress_faults" / "site"
BACKOFF_S = 3.0
FALLBACKS, RECOVERIES, IN_USE = ("yellowstone_fallbacks_total", "yellowstone_recoveries_total",
                                 "yellowstone_backend_in_use")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfs-s16-metrics")
    build_model("keras", root / "models" / "1")
    (root / "monitoring.config").write_text("prometheus_config { enable: true }\n")
    fault = root / "fault"
    env = {"YS_STRESS_FAULT_FILE": str(fault),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(SITE), os.environ.get("PYTHONPATH")]))}
    with TFServer(root, f"--model_name={NAME}", f"--model_base_path={root / 'models'}",
                  f"--monitoring_config_file={root / 'monitoring.config'}", "--yellowstone_shim=always",
                  "--max_runtime_failures=2", f"--breaker_backoff_s={BACKOFF_S}",
                  f"--breaker_backoff_max_s={2 * BACKOFF_S}", env=env,
                  unset=("YELLOWSTONE_BACKEND", "YELLOWSTONE_BACKENDS")) as srv:
        yield srv, fault


@pytest.fixture(scope="module")
def reference(server):
    srv, _ = server
    fn = tf.saved_model.load(str(srv.root / "models" / "1")).signatures["serving_default"]
    return lambda x: {k: v.numpy() for k, v in fn(x=tf.constant(x)).items()}


def _scrape(srv) -> dict[str, dict[tuple, float]]:
    """The model's ``yellowstone_*`` samples: {sample name: {labels but model, version, signature: value}}."""
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(srv.rest + METRICS, timeout=30).text
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("yellowstone_") and s.labels.get("model") == NAME:
                key = tuple(sorted((k, v) for k, v in s.labels.items()
                                   if k not in ("model", "version", "signature")))
                out.setdefault(s.name, {})[key] = s.value
    return out


def _predict(srv, reference) -> None:
    x = np.random.default_rng().standard_normal((3, 8)).astype(np.float32)
    got, want = predict(srv.channel, NAME, {"x": x}), reference(x)
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=1e-4, rtol=1e-3)


def test_metrics_show_the_runtime_fallback_and_the_recovery(server, reference):
    srv, fault = server
    log = srv.log_text()
    shim = re.search(r"served by the shim \((\w+), C\)", log)
    if shim is None:
        pytest.skip("the shim does not serve here: no compiled call to fault")
    backend = shim.group(1)
    assert "fault hook armed" in log

    _predict(srv, reference)
    before = _scrape(srv)
    assert before[IN_USE] == {(("backend", backend),): 1}
    assert FALLBACKS not in before and RECOVERIES not in before

    fault.write_text("raise")
    try:
        for _ in range(3):  # 2 failures open the breaker; the third goes to TensorFlow at once
            _predict(srv, reference)
        fallen = _scrape(srv)
    finally:
        fault.unlink()
    assert fallen[FALLBACKS] == {(("backend", backend), ("reason", "runtime")): 2,
                                 (("backend", backend), ("reason", "breaker-open")): 1}
    assert fallen[IN_USE] == {(("backend", backend),): 0, (("backend", "tensorflow"),): 1}
    assert RECOVERIES not in fallen

    deadline = time.monotonic() + BACKOFF_S + 60
    while _scrape(srv).get(RECOVERIES) is None:  # TensorFlow answers until the back-off is over
        assert time.monotonic() < deadline, "the breaker never closed"
        time.sleep(0.2)
        _predict(srv, reference)
    healed = _scrape(srv)
    assert healed[RECOVERIES] == {(("backend", backend),): 1}
    assert healed[IN_USE] == {(("backend", backend),): 1, (("backend", "tensorflow"),): 0}
    assert healed[FALLBACKS][(("backend", backend), ("reason", "runtime"))] == 2
