"""settle_heap: what is alive after models load leaves the collector's passes; garbage does not."""

from __future__ import annotations

import gc
import weakref

from yellowstone.serving import settle_heap


class _Node:
    def __init__(self):
        self.me = self  # a cycle: only the collector frees it


def test_live_objects_are_frozen_and_a_later_settle_frees_what_became_garbage():
    try:
        node = _Node()
        ref = weakref.ref(node)
        frozen = settle_heap()
        assert frozen == gc.get_freeze_count() > 0
        del node
        gc.collect()  # a normal pass does not look at frozen objects
        assert ref() is not None
        settle_heap()  # after an unload: unfreeze, collect, freeze again
        assert ref() is None
    finally:
        gc.unfreeze()


def test_garbage_present_at_settle_time_is_collected_not_frozen():
    try:
        node = _Node()
        ref = weakref.ref(node)
        del node
        settle_heap()
        assert ref() is None
    finally:
        gc.unfreeze()


def test_tf_serving_manager_settles_the_heap_when_versions_load_and_unload(tmp_path):
    from yellowstone.plugins.tfserving.manager import ModelConfig, ModelManager

    base = tmp_path / "m"
    (base / "1").mkdir(parents=True)
    (base / "1" / "saved_model.pb").write_bytes(b"")  # a version directory; the loader ignores it
    loaded: list[weakref.ref] = []

    def loader(cfg, version, path):
        servable = _Node()  # stands in for a servable: a cycle only the collector frees
        loaded.append(weakref.ref(servable))
        return servable

    try:
        gc.unfreeze()
        mgr = ModelManager([ModelConfig(name="m", base_path=str(base))], loader, poll_s=0)
        mgr.poll_once()
        assert gc.get_freeze_count() > 0 and loaded[0]() is not None
        gc.unfreeze()
        mgr.poll_once()  # nothing changed: no settle
        assert gc.get_freeze_count() == 0
        (base / "2").mkdir()
        (base / "2" / "saved_model.pb").write_bytes(b"")
        mgr.poll_once()  # version 2 loads, version 1 unloads: settled, version 1 freed
        assert gc.get_freeze_count() > 0
        assert loaded[0]() is None and loaded[1]() is not None
    finally:
        gc.unfreeze()
