"""Shared test set-up: markers, the ``requires`` helper, and a per-test cache directory."""

from __future__ import annotations

import importlib.util

import pytest

# torchvision must be imported before tensorflow in one process (the other order segfaults),
# and any test may pull in either, so settle the order once here.
if importlib.util.find_spec("torchvision") is not None:
    import torchvision  # noqa: F401

_BACKEND_MODULES = {"onnxruntime": "onnxruntime", "openvino": "openvino", "tvm": "tvm",
                    "inductor": "torch", "tensorrt": "tensorrt", "torch": "torch",
                    "tensorflow": "tensorflow"}


def requires(feature: str) -> pytest.MarkDecorator:
    """Mark a test with ``feature`` and skip it, with the reason, where the feature is missing."""
    module = _BACKEND_MODULES[feature]
    missing = importlib.util.find_spec(module) is None
    reason = f"{feature} is not installed (pip install 'yellowstone[{feature}]')"
    if feature == "tensorrt" and not missing:
        from yellowstone.backends import get_backend

        avail = get_backend("tensorrt").probe()
        missing, reason = not avail.available, avail.reason
    marks = [getattr(pytest.mark, feature), pytest.mark.skipif(missing, reason=reason)]

    def apply(fn):
        for mark in marks:
            fn = mark(fn)
        return fn

    return apply  # type: ignore[return-value]


def backend_param(name: str) -> object:
    """A pytest.param for a backend name carrying its marker and skip."""
    module = _BACKEND_MODULES.get(name, name)
    return pytest.param(name, id=name, marks=[
        getattr(pytest.mark, name),
        pytest.mark.skipif(importlib.util.find_spec(module) is None,
                           reason=f"{name} is not installed"),
    ])


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A fresh cache directory, also exported as YELLOWSTONE_CACHE_DIR."""
    d = tmp_path / "cache"
    monkeypatch.setenv("YELLOWSTONE_CACHE_DIR", str(d))
    monkeypatch.delenv("YELLOWSTONE_BACKEND", raising=False)
    return d


def pytest_sessionfinish(session, exitstatus):
    """Stop any process a test left running, and say which: a leaked server or a hung worker
    would otherwise keep the run's output open after the last test and the run would never end."""
    try:
        import psutil
    except ImportError:
        return
    def left_by_a_test(p) -> bool:  # multiprocessing's resource tracker ends with us by design
        try:
            return "multiprocessing.resource_tracker" not in " ".join(p.cmdline())
        except psutil.Error:
            return False

    leaked = [p for p in psutil.Process().children(recursive=True) if p.is_running() and left_by_a_test(p)]
    if not leaked:
        return
    names = []
    for p in leaked:
        try:
            names.append(f"{p.pid} {' '.join(p.cmdline())[:160]}")
            p.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(leaked, timeout=10)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and names:
        reporter.write_line("processes left running by tests, now killed:", yellow=True)
        for line in names:
            reporter.write_line(f"  {line}")
