"""The backend registry: entry points under names of their own, the protocol, the auto tag."""

from __future__ import annotations

import types

import pytest

import yellowstone
from yellowstone import backends
from yellowstone.backends import backend_names, get_backend, register_backend, unregister_backend
from yellowstone.backends.base import Backend, missing_members
from yellowstone.errors import ConfigError

from .fakes import FakeBackend, NumpyModel

BUILTIN = ["native", "onnxruntime", "openvino", "tvm", "inductor", "tensorrt"]


class ExtraBackend(FakeBackend):
    """A third-party backend, as an entry point names it."""

    def __init__(self):
        super().__init__("extra")


class NoPrecisionCheck:
    """A third-party backend written against the protocol before ``supports_precision``."""

    name, dynamic_batch, cacheable, auto_excluded = "old", True, True, ""

    def probe(self): ...

    def version(self): ...

    def supports(self, model): ...

    def compile(self, model, request, workdir): ...

    def load(self, model, request, workdir): ...


@pytest.fixture
def entry_points(monkeypatch):
    """Set the installed ``yellowstone.backends`` entry points (name -> target)."""
    found: dict[str, str] = {}
    monkeypatch.setattr(backends, "_entry_points", lambda: found)
    yield found
    for name in found:
        unregister_backend(name)


def test_entry_point_reusing_a_builtin_name_is_an_error_naming_both(entry_points, cache_dir):
    entry_points["openvino"] = "acme_ov.backend:FasterOpenVino"
    with pytest.raises(ConfigError) as exc:
        backend_names()
    message = str(exc.value)
    assert "yellowstone.backends.openvino:OpenVinoBackend" in message
    assert "acme_ov.backend:FasterOpenVino" in message
    with pytest.raises(ConfigError, match="reuses the name of the built-in backend 'openvino'"):
        yellowstone.boost(NumpyModel(), backends="auto", time_budget_s=0.05)


def test_entry_point_with_its_own_name_is_listed_and_loaded(entry_points):
    entry_points["extra"] = "tests.unit.test_registry:ExtraBackend"
    assert backend_names() == [*BUILTIN, "extra"]
    backend = get_backend("extra")
    assert isinstance(backend, ExtraBackend) and get_backend("extra") is backend


def test_a_backend_must_implement_the_whole_protocol(entry_points):
    entry_points["old"] = "tests.unit.test_registry:NoPrecisionCheck"
    with pytest.raises(ConfigError, match=r"'old' .*NoPrecisionCheck.* lacks supports_precision"):
        get_backend("old")
    with pytest.raises(ConfigError, match="lacks .*auto_excluded"):
        register_backend("ns", types.SimpleNamespace(name="ns"))
    assert "ns" not in backend_names()


def test_builtin_backends_conform_and_carry_the_auto_tag():
    for name in BUILTIN:
        backend = get_backend(name)
        assert missing_members(backend) == [], name
        assert isinstance(backend, Backend)
        assert isinstance(backend.auto_excluded, str)
    assert get_backend("tvm").auto_excluded.startswith("left out of auto: untuned")
    assert [n for n in BUILTIN if get_backend(n).auto_excluded] == ["tvm"]
    assert not hasattr(backends, "AUTO_EXCLUDED")  # the tag is the one place


def test_protocol_lists_supports_precision_and_the_tag():
    members = missing_members(object())
    assert {"supports_precision", "auto_excluded", "probe", "compile", "load"} <= set(members)
