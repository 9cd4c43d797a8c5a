"""The error table through the interposer: client errors keep their class and statuses, the rest fall back.

An application under ``yellowstone run`` maps errors itself. Every error class of the table
either reaches it unchanged (the client's: 4xx, with the same ``http_status`` and ``grpc_code``
every server answers) or is absorbed by the one fallback path (the original model answers).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.error_table import ERROR_CASES, ERROR_IDS
from yellowstone import metrics

from .test_interpose_proxies import _boosted_proxy, _x, fakes  # noqa: F401 - fixture


@pytest.mark.parametrize(("exc", "http", "grpc_code"), ERROR_CASES, ids=ERROR_IDS)
def test_error_table_through_the_interposer(fakes, monkeypatch, exc, http, grpc_code):  # noqa: F811
    proxy, model, rng = _boosted_proxy()

    def failing(feeds):
        raise exc

    monkeypatch.setattr(proxy._ys.boosted, "run", failing)
    x = _x(rng)
    if 400 <= http < 500:
        with pytest.raises(type(exc)) as info:
            proxy(x)
        assert info.value is exc
        assert (info.value.http_status, info.value.grpc_code) == (http, grpc_code)
        assert proxy._ys.calls["runtime"] == 0
    else:
        before = metrics.get(metrics.FALLBACKS, backend="fast", reason="runtime")
        np.testing.assert_allclose(proxy(x)[0], model.run({"x": x})[0], rtol=1e-6)
        assert metrics.get(metrics.FALLBACKS, backend="fast", reason="runtime") == before + 1
