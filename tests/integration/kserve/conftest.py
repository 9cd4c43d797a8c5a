"""Fixtures for the KServe tests: the helpers live in ksserver.py, importable from every test here."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
pytest.importorskip("kserve", reason="kserve is not installed (pip install 'yellowstone[kserve]')")
