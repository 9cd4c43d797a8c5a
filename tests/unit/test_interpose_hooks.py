"""Import hooks: a loader is patched once its module is imported, and put back on uninstall.

A tiny fake framework module stands in for torch: it is written to a temp directory and
imported through the normal machinery, so the meta-path finder really sees it.
"""

from __future__ import annotations

import importlib
import sys
import types

import pytest

import yellowstone.interpose as yi
from yellowstone.interpose.apis import Api
from yellowstone.interpose.settings import InterposeSettings

FAKE = "ys_fake_framework"
FAKE_API = Api("ys_fake_framework.load", "ys-fake", FAKE, ((FAKE, "load"),), "torch")


@pytest.fixture
def fake_framework(tmp_path, monkeypatch):
    """A module ``ys_fake_framework`` with a ``load(path)`` function, not imported yet."""
    (tmp_path / f"{FAKE}.py").write_text(
        "LOADED = []\n"
        "def load(path):\n"
        "    LOADED.append(path)\n"
        "    return {'loaded': path}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("YELLOWSTONE_INTERPOSE", raising=False)
    sys.modules.pop(FAKE, None)
    importlib.invalidate_caches()
    yield
    yi.uninstall()
    sys.modules.pop(FAKE, None)


def _install() -> None:
    assert yi.install(InterposeSettings(apis=(FAKE_API,)))


def test_loader_patched_when_its_module_is_imported_after_install(fake_framework):
    _install()
    assert FAKE not in sys.modules and not yi.patched_functions()  # nothing imported by install
    fw = importlib.import_module(FAKE)
    assert getattr(fw.load, "__yellowstone_api__", None) == FAKE_API.name
    assert yi.patched_functions() == {f"{FAKE}.load": fw.load.__wrapped__}
    assert fw.load("m.bin") == {"loaded": "m.bin"}  # not a torch module: returned untouched
    assert fw.LOADED == ["m.bin"]


def test_uninstall_restores_the_original_and_stops_patching(fake_framework):
    _install()
    fw = importlib.import_module(FAKE)
    original = fw.load.__wrapped__
    yi.uninstall()
    assert fw.load is original
    assert not yi.patched_functions() and not yi.is_installed()
    assert not any(type(f).__name__ == "PatchOnImport" for f in sys.meta_path)
    sys.modules.pop(FAKE)
    again = importlib.import_module(FAKE)  # a fresh import after uninstall stays unpatched
    assert not hasattr(again.load, "__yellowstone_api__")


def test_module_imported_before_install_is_patched_at_install(fake_framework, monkeypatch):
    def load(path):
        return path

    mod = types.ModuleType(FAKE)
    mod.load = load  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, FAKE, mod)
    _install()
    assert mod.load is not load and mod.load.__wrapped__ is load
    yi.uninstall()
    assert mod.load is load


def test_env_switch_off_installs_nothing(fake_framework, monkeypatch):
    monkeypatch.setenv("YELLOWSTONE_INTERPOSE", "0")
    assert not yi.install(InterposeSettings(apis=(FAKE_API,)))
    fw = importlib.import_module(FAKE)
    assert not hasattr(fw.load, "__yellowstone_api__") and not yi.is_installed()


def test_install_is_idempotent(fake_framework):
    _install()
    _install()
    fw = importlib.import_module(FAKE)
    assert fw.load.__wrapped__.__module__ == FAKE  # wrapped once, not twice
    assert sum(type(f).__name__ == "PatchOnImport" for f in sys.meta_path) == 1
