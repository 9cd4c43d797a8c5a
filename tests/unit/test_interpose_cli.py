"""``yellowstone run`` in-process: the application's logging is left as it was configured."""

from __future__ import annotations

import logging
import sys

import pytest

import yellowstone.interpose as yi


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def sandbox(monkeypatch):
    """Restore argv, sys.path, the ``yellowstone`` logger and the interposer after the run."""
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delenv("YELLOWSTONE_INTERPOSE", raising=False)
    ours = logging.getLogger("yellowstone")
    saved = (list(ours.handlers), ours.level, ours.propagate)
    yield
    yi.uninstall()
    ours.handlers[:] = saved[0]
    ours.setLevel(saved[1])
    ours.propagate = saved[2]


def test_root_handler_installed_before_run_main_is_still_there(sandbox, tmp_path):
    root = logging.getLogger()
    app_handler = ListHandler()
    root.addHandler(app_handler)
    level = root.level
    script = tmp_path / "app.py"
    script.write_text("import logging\n"
                      "logging.getLogger('app').warning('from the app')\n"
                      "logging.getLogger('yellowstone.engine').warning('from the core')\n")
    try:
        before = list(root.handlers)
        assert yi.run_main(["-q", "--apis", "torch.jit.load", str(script)]) == 0
        after = list(root.handlers)
    finally:
        root.removeHandler(app_handler)
    assert after == before and app_handler in after and root.level == level
    ours = logging.getLogger("yellowstone")
    assert ours.level == logging.WARNING and ours.propagate  # quiet: only our logger's level
    # the app's own handler saw both its record and ours, each once
    assert [r.getMessage() for r in app_handler.records] == ["from the app", "from the core"]


def test_python_m_interpose_main_is_run_main(sandbox, tmp_path, monkeypatch, capsys):
    root_handlers = list(logging.getLogger().handlers)
    marker = tmp_path / "ran"
    script = tmp_path / "app.py"
    script.write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.setattr(sys, "argv", ["yellowstone.interpose", "--dry-run", str(script)])
    assert yi.main() == 0
    assert "would run:" in capsys.readouterr().out and not marker.exists()
    assert logging.getLogger().handlers == root_handlers  # no basicConfig on the root
