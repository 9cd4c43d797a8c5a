"""The shim path under faults: a raising or hanging shim call is fenced off as the core does.

A tiny Keras SavedModel is loaded in-process as a :class:`Servable` with shim policy
``always``; its shim model's ``run`` is replaced to raise or to hang. Answers are compared
with TensorFlow's own signature call on fresh random inputs, and the metrics
(``yellowstone_fallbacks_total``, ``yellowstone_recoveries_total``,
``yellowstone_backend_in_use``) are read with ``yellowstone.metrics.get``. Each test loads its
own servable under its own model name, so each reads its own series.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest
from tfs_server import build_model

pytestmark = [pytest.mark.tensorflow, pytest.mark.openvino, pytest.mark.onnxruntime]

tf = pytest.importorskip(
    "tensorflow", reason="tensorflow is not installed (pip install 'yellowstone[tfserving]')"
)

from yellowstone import BoostConfig, metrics  # noqa: E402
from yellowstone.plugins.tfserving.errors import from_exception  # noqa: E402
from yellowstone.plugins.tfserving.servable import Servable  # noqa: E402

KEY = "serving_default"
ATOL, RTOL = 1e-4, 1e-3
FALLBACKS, RECOVERIES, IN_USE = metrics.FALLBACKS, metrics.RECOVERIES, metrics.BACKEND_IN_USE


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """The Keras export, with a module-wide cache (the first load boosts, later ones hit it)."""
    root = tmp_path_factory.mktemp("shim_faults")
    path = root / "keras" / "1"
    build_model("keras", path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("YELLOWSTONE_CACHE_DIR", str(root / "cache"))
        mp.delenv("YELLOWSTONE_BACKEND", raising=False)
        yield path


@pytest.fixture(scope="module")
def reference(model_dir):
    """TensorFlow's own answer: tf.saved_model.load + signature call."""
    fn = tf.saved_model.load(str(model_dir)).signatures[KEY]
    return lambda x: {k: v.numpy() for k, v in fn(x=tf.constant(x)).items()}


@pytest.fixture
def load(model_dir):
    """Load the model as ``name`` with BoostConfig ``options``; closed after the test."""
    loaded: list[Servable] = []

    def make(name: str, **options) -> Servable:
        servable = Servable(name, 1, model_dir, shim_policy="always", config=BoostConfig(**options))
        loaded.append(servable)
        if KEY not in servable.shims:
            pytest.skip(f"the shim does not serve here: {servable.shim_errors.get(KEY, 'not chosen')}")
        return servable

    yield make
    for servable in loaded:
        servable.close()


def _x(batch: int = 3) -> np.ndarray:
    return np.random.default_rng().standard_normal((batch, 8)).astype(np.float32)


def _check(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=ATOL, rtol=RTOL)


def _counting(shim, fn):
    """``fn`` as the shim's run, recording each call."""
    calls: list[int] = []

    def run(feeds):
        calls.append(1)
        return fn(feeds)

    shim.run = run
    return calls


def _raise(feeds):
    raise RuntimeError("injected shim fault")


def _past_backoff(fence) -> None:
    """Wait out the breaker's (tiny) back-off."""
    time.sleep(max(0.0, fence.breaker.retry_at - fence.breaker.clock()) + 0.01)


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_raising_shim_call_is_answered_by_tensorflow(load, reference, caplog):
    name = "faults-raise"
    servable = load(name, max_runtime_failures=3)
    shim = servable.shims[KEY]
    calls = _counting(shim, _raise)
    caplog.set_level(logging.DEBUG, logger="yellowstone.plugins.tfserving")
    for _ in range(2):
        x = _x()
        _check(servable.predict(KEY, {"x": x}), reference(x))
    assert len(calls) == 2
    assert metrics.get(FALLBACKS, model=name, backend=shim.backend, reason="runtime") == 2
    warnings = [r for r in caplog.records
                if r.levelno == logging.WARNING and "failed at run time" in r.message]
    assert len(warnings) == 1 and "injected shim fault" in warnings[0].message
    assert servable.fences[KEY].serving == shim.backend  # under the threshold: the shim still serves


def test_failures_in_a_row_open_the_breaker_which_recovers_after_the_backoff(load, reference, caplog):
    name = "faults-breaker"
    servable = load(name, max_runtime_failures=2, breaker_backoff_s=0.05, breaker_backoff_max_s=0.1)
    shim, fence = servable.shims[KEY], servable.fences[KEY]
    backend, real = shim.backend, shim.run
    assert metrics.get(IN_USE, model=name, backend=backend) == 1
    calls = _counting(shim, _raise)
    caplog.set_level(logging.INFO, logger="yellowstone.plugins.tfserving")
    for _ in range(2):
        x = _x()
        _check(servable.predict(KEY, {"x": x}), reference(x))
    assert fence.breaker.state == "open" and fence.serving == "tensorflow"
    assert metrics.get(IN_USE, model=name, backend="tensorflow") == 1
    assert metrics.get(IN_USE, model=name, backend=backend) == 0

    x = _x()  # open: TensorFlow answers without trying the shim
    _check(servable.predict(KEY, {"x": x}), reference(x))
    assert len(calls) == 2
    assert metrics.get(FALLBACKS, model=name, reason="breaker-open") == 1

    _past_backoff(fence)  # the half-open trial fails: open again, for twice as long
    x = _x()
    _check(servable.predict(KEY, {"x": x}), reference(x))
    assert len(calls) == 3 and fence.breaker.state == "open" and fence.breaker.backoff == pytest.approx(0.1)

    shim_calls = _counting(shim, real)  # the fault is gone: the next trial recovers
    _past_backoff(fence)
    for _ in range(3):
        x = _x()
        _check(servable.predict(KEY, {"x": x}), reference(x))
    assert len(shim_calls) == 3 and fence.breaker.state == "closed"
    assert metrics.get(RECOVERIES, model=name, backend=backend) == 1
    assert metrics.get(IN_USE, model=name, backend=backend) == 1
    assert metrics.get(IN_USE, model=name, backend="tensorflow") == 0
    assert metrics.get(FALLBACKS, model=name, reason="runtime") == 3
    assert metrics.get(FALLBACKS, model=name, reason="breaker-open") == 1
    messages = [r.message for r in caplog.records]
    assert sum("circuit breaker for the shim" in m for m in messages) == 1
    assert sum("recovered" in m for m in messages) == 1


def test_a_hanging_shim_call_does_not_hold_later_requests(load, reference):
    name = "faults-hang"
    servable = load(name, call_timeout_s=0.2, max_runtime_failures=5)
    shim, fence = servable.shims[KEY], servable.fences[KEY]
    backend, real = shim.backend, shim.run
    release = threading.Event()

    def hang(feeds):
        release.wait(120)
        return real(feeds)

    calls = _counting(shim, hang)
    try:
        x = _x()  # past its deadline: TensorFlow answers it while the call still sleeps
        _check(servable.predict(KEY, {"x": x}), reference(x))
        assert len(calls) == 1 and not release.is_set() and fence.serving == "tensorflow"

        answers: dict[int, tuple] = {}

        def client(i: int) -> None:
            xi = _x(i + 1)
            answers[i] = (servable.predict(KEY, {"x": xi}), reference(xi))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(answers) == 4 and not release.is_set()  # all answered; the hung call sleeps on
        for got, want in answers.values():
            _check(got, want)
        assert len(calls) == 1  # none went to the shim
        assert metrics.get(FALLBACKS, model=name, backend=backend, reason="deadline") == 5
        assert metrics.get(IN_USE, model=name, backend="tensorflow") == 1
        assert metrics.get(IN_USE, model=name, backend=backend) == 0
    finally:
        release.set()
    _wait_for(lambda: fence.healthy)  # the slow call returned: the shim serves again
    x = _x()
    _check(servable.predict(KEY, {"x": x}), reference(x))
    assert len(calls) == 2
    assert metrics.get(IN_USE, model=name, backend=backend) == 1
    assert metrics.get(FALLBACKS, model=name, reason="deadline") == 5


def test_a_hostile_request_tensorflow_refuses_is_not_counted_as_a_fallback(load, reference):
    name = "faults-hostile"
    servable = load(name)
    calls = _counting(servable.shims[KEY], servable.shims[KEY].run)
    bad = np.random.default_rng().standard_normal((2, 5)).astype(np.float32)  # the artifact takes [-1, 8]
    with pytest.raises(Exception) as info:
        servable.predict(KEY, {"x": bad})
    assert from_exception(info.value).code == "INVALID_ARGUMENT"
    assert calls == [] and metrics.get(FALLBACKS, model=name) == 0
    x = _x()  # the shim still serves good requests
    _check(servable.predict(KEY, {"x": x}), reference(x))
    assert len(calls) == 1 and servable.fences[KEY].healthy
