"""spin_wait: backend threads spin between calls in a loop of one's own, sleep in a server."""

from __future__ import annotations

import pytest

from yellowstone.builder import Builder
from yellowstone.config import BoostConfig
from yellowstone.serving import boost_config

from .fakes import NumpyModel


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv("YELLOWSTONE_SPIN_WAIT", raising=False)


def _shared(cfg: BoostConfig) -> bool:
    return Builder(NumpyModel(), cfg, None, "host").request("fake", None).shared


def test_a_library_call_may_spin_and_a_server_does_not():
    assert BoostConfig().spin_wait is True and not _shared(BoostConfig())
    served = boost_config(section={})
    assert served.spin_wait is False and _shared(served)
    assert boost_config(flags={}, server=False).spin_wait is True


def test_every_layer_can_turn_spinning_back_on(monkeypatch):
    assert boost_config(section={"spin-wait": True}).spin_wait is True
    assert boost_config(flags={"spin_wait": "true"}).spin_wait is True
    monkeypatch.setenv("YELLOWSTONE_SPIN_WAIT", "1")
    assert boost_config(section={}).spin_wait is True
    # ...except with several workers on the cores, where idle threads always sleep
    assert _shared(boost_config(section={"workers": 2, "spin_wait": True}))
