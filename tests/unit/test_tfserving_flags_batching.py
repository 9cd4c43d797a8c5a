"""Server-side batching (``--enable_batching``) on a fake runner: merging, splitting, each parameter."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from yellowstone.plugins.tfserving.batching import (
    QUEUE_FULL,
    BatchScheduler,
    QueueOptions,
    SchedulerOptions,
    ServableBatching,
    read_parameters,
)
from yellowstone.plugins.tfserving.errors import ServingError
from yellowstone.plugins.tfserving.textproto import StartupError


class Recorder:
    """A runner: y = 2x + row sum, recording each merged batch's inputs."""

    def __init__(self, gate: threading.Event | None = None):
        self.batches: list[dict[str, np.ndarray]] = []
        self.gate = gate
        self.lock = threading.Lock()

    def __call__(self, feeds):
        if self.gate is not None:
            self.gate.wait(10)
        with self.lock:
            self.batches.append({k: v.copy() for k, v in feeds.items()})
        x = feeds["x"]
        return {"y": 2 * x, "s": x.reshape(len(x), -1).sum(axis=1)}


def _scheduler(threads=1, name="test"):
    return BatchScheduler(SchedulerOptions(num_batch_threads=threads, thread_pool_name=name))


def _concurrent(queue, inputs):
    results, errors = [None] * len(inputs), [None] * len(inputs)

    def go(i):
        try:
            results[i] = queue.run({"x": inputs[i]})
        except Exception as exc:  # noqa: BLE001
            errors[i] = exc

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results, errors


def test_concurrent_runs_form_batches_and_split_back():
    sched = _scheduler()
    runner = Recorder()
    q = sched.add_queue(QueueOptions(max_batch_size=8, batch_timeout_micros=300_000), runner)
    rng = np.random.default_rng()
    inputs = [rng.standard_normal((1 + i % 2, 3)).astype(np.float32) for i in range(8)]
    results, errors = _concurrent(q, inputs)
    assert errors == [None] * 8
    for x, out in zip(inputs, results):
        np.testing.assert_array_equal(out["y"], 2 * x)
        np.testing.assert_allclose(out["s"], x.sum(axis=1), rtol=1e-6)
    assert len(runner.batches) < 8
    assert max(len(b["x"]) for b in runner.batches) > 1
    assert all(len(b["x"]) <= 8 for b in runner.batches)
    sched.stop()


def test_full_batch_runs_before_the_timeout():
    sched = _scheduler()
    runner = Recorder()
    q = sched.add_queue(QueueOptions(max_batch_size=4, batch_timeout_micros=30_000_000), runner)
    start = time.monotonic()
    results, errors = _concurrent(q, [np.full((1, 2), i, np.float32) for i in range(4)])
    assert errors == [None] * 4 and time.monotonic() - start < 20
    assert [len(b["x"]) for b in runner.batches] == [4]
    sched.stop()


def test_allowed_batch_sizes_pad_with_the_last_tasks_first_row():
    sched = _scheduler()
    runner = Recorder()
    opts = QueueOptions(max_batch_size=4, batch_timeout_micros=300_000, allowed_batch_sizes=(2, 4))
    q = sched.add_queue(opts, runner)
    inputs = [np.full((1, 2), i + 1, np.float32) for i in range(3)]
    results, errors = _concurrent(q, inputs)
    assert errors == [None] * 3
    for x, out in zip(inputs, results):
        np.testing.assert_array_equal(out["y"], 2 * x)
    for batch in runner.batches:
        assert len(batch["x"]) in (2, 4)
    padded = [b for b in runner.batches if len(b["x"]) == 4]
    if padded:  # 3 tasks in one batch: one padding row, a copy of the last task's first row
        np.testing.assert_array_equal(padded[0]["x"][3], padded[0]["x"][2])
    sched.stop()


def test_pad_variable_length_inputs_pads_with_zeros_and_slices_back():
    sched = _scheduler()
    runner = Recorder()
    opts = QueueOptions(max_batch_size=2, batch_timeout_micros=30_000_000, pad_variable_length_inputs=True)
    q = sched.add_queue(opts, runner)
    a = np.array([[7.0, 8.0]], np.float32)
    b = np.array([[1.0, 2.0, 3.0]], np.float32)
    results, errors = _concurrent(q, [a, b])
    assert errors == [None, None]
    assert len(runner.batches) == 1 and runner.batches[0]["x"].shape == (2, 3)  # one batch, full
    rows = {tuple(r) for r in runner.batches[0]["x"].tolist()}
    assert rows == {(7.0, 8.0, 0.0), (1.0, 2.0, 3.0)}
    for x, out in zip((a, b), results):
        np.testing.assert_array_equal(out["y"], 2 * x)  # sliced back to the task's own length
        np.testing.assert_allclose(out["s"], x.sum(axis=1))
    sched.stop()


class Masked:
    """A runner over (ids, mask): per-token features [b, len, 2] and a masked sum [b]."""

    def __init__(self):
        self.shapes = []

    def __call__(self, feeds):
        ids, mask = feeds["ids"], feeds["mask"]
        self.shapes.append(ids.shape)
        return {"h": np.stack([ids * 2, -ids], axis=-1), "total": (ids * mask).sum(axis=1)}


def test_padding_slices_every_dynamic_output_dim_back_to_each_task():
    sched = _scheduler()
    runner = Masked()
    opts = QueueOptions(max_batch_size=3, batch_timeout_micros=30_000_000, pad_variable_length_inputs=True)
    q = sched.add_queue(opts, runner, output_shapes={"h": [-1, -1, 2], "total": [-1]})
    rng = np.random.default_rng()
    tasks = [{"ids": rng.integers(1, 100, (1, n)).astype(np.int32), "mask": np.ones((1, n), np.int32)}
             for n in (2, 5, 3)]
    results, errors = [None] * 3, [None] * 3

    def go(i):
        try:
            results[i] = q.run(tasks[i])
        except Exception as exc:  # noqa: BLE001
            errors[i] = exc

    threads = [threading.Thread(target=go, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [None] * 3 and runner.shapes == [(3, 5)]
    for feeds, out in zip(tasks, results):
        want = Masked()(feeds)
        np.testing.assert_array_equal(out["h"], want["h"])  # [1, n, 2], not [1, 5, 2]
        np.testing.assert_array_equal(out["total"], want["total"])
    sched.stop()


def test_different_shapes_without_padding_run_in_separate_batches():
    sched = _scheduler()
    runner = Recorder()
    q = sched.add_queue(QueueOptions(max_batch_size=4, batch_timeout_micros=200_000), runner)
    inputs = [np.full((1, 2 + i % 2), i + 1, np.float32) for i in range(6)]
    results, errors = _concurrent(q, inputs)
    assert errors == [None] * 6
    for x, out in zip(inputs, results):
        np.testing.assert_array_equal(out["y"], 2 * x)
    assert sum(len(b["x"]) for b in runner.batches) == 6
    assert {b["x"].shape[1] for b in runner.batches} == {2, 3}  # each batch holds one shape
    sched.stop()


def test_a_full_queue_answers_unavailable_with_tf_servings_words():
    sched = _scheduler(threads=1)
    gate = threading.Event()
    q = sched.add_queue(QueueOptions(max_batch_size=1, max_enqueued_batches=1), Recorder(gate))
    first = threading.Thread(target=q.run, args=({"x": np.ones((1, 1), np.float32)},))
    first.start()
    time.sleep(0.3)  # the first batch is on the thread, blocked on the gate
    second = threading.Thread(target=q.run, args=({"x": np.ones((1, 1), np.float32)},))
    second.start()
    time.sleep(0.3)  # the second batch fills the queue
    with pytest.raises(ServingError) as info:
        q.run({"x": np.ones((1, 1), np.float32)})
    assert info.value.code == "UNAVAILABLE" and info.value.message == QUEUE_FULL
    assert info.value.http_status == 503
    gate.set()
    first.join(10)
    second.join(10)
    sched.stop()


def test_task_larger_than_max_batch_size():
    sched = _scheduler()
    q = sched.add_queue(QueueOptions(max_batch_size=4), Recorder())
    with pytest.raises(ServingError) as info:
        q.run({"x": np.ones((5, 1), np.float32)})
    assert info.value.code == "INVALID_ARGUMENT"
    assert info.value.message == "Task size 5 is larger than maximum input batch size 4"
    with pytest.raises(ServingError, match="at least one dimension"):
        q.run({"x": np.float32(1.0)})
    with pytest.raises(ServingError, match="equal 0th-dimension size"):
        q.run({"x": np.ones((2, 1)), "z": np.ones((3, 1))})
    sched.stop()


def test_large_batch_splitting_runs_pieces_of_max_execution_batch_size():
    sched = _scheduler()
    runner = Recorder()
    opts = QueueOptions(max_batch_size=8, enable_large_batch_splitting=True, max_execution_batch_size=2)
    q = sched.add_queue(opts, runner)
    x = np.random.default_rng().standard_normal((5, 3)).astype(np.float32)
    out = q.run({"x": x})
    np.testing.assert_array_equal(out["y"], 2 * x)
    assert sorted(len(b["x"]) for b in runner.batches) == [1, 2, 2]
    sched.stop()


def test_parameter_validation_uses_tf_servings_messages():
    with pytest.raises(StartupError, match="monotonically increasing"):
        QueueOptions(max_batch_size=4, allowed_batch_sizes=(2, 2, 4))
    with pytest.raises(StartupError, match="Last entry in allowed_batch_sizes must match max_batch_size; "
                                           "last entry was 3; expected 4"):
        QueueOptions(max_batch_size=4, allowed_batch_sizes=(1, 3))
    with pytest.raises(StartupError, match="max_batch_size must be positive"):
        QueueOptions(max_batch_size=0)
    with pytest.raises(StartupError, match="num_batch_threads must be positive"):
        SchedulerOptions(num_batch_threads=0)


def test_parameters_file(tmp_path):
    f = tmp_path / "batching.config"
    f.write_text("max_batch_size { value: 16 }\nbatch_timeout_micros { value: 1000 }\n"
                 "max_enqueued_batches { value: 3 }\nnum_batch_threads { value: 2 }\n"
                 "thread_pool_name { value: 'pool' }\nallowed_batch_sizes: 8\nallowed_batch_sizes: 16\n"
                 "pad_variable_length_inputs: true\n")
    sched, queue = read_parameters(str(f))
    assert (sched.num_batch_threads, sched.thread_pool_name) == (2, "pool")
    assert (queue.max_batch_size, queue.batch_timeout_micros, queue.max_enqueued_batches) == (16, 1000, 3)
    assert queue.allowed_batch_sizes == (8, 16) and queue.pad_variable_length_inputs
    default_sched, default_queue = read_parameters(None)
    assert default_sched.thread_pool_name == "model_server_batch_threads"
    assert (default_queue.max_batch_size, default_queue.max_enqueued_batches) == (1000, 10)
    f.write_text("max_batch_size { value: 16 }\nlow_priority_max_batch_size { value: 2 }\n")
    with pytest.raises(StartupError) as info:
        read_parameters(str(f))
    assert info.value.code == "INVALID_ARGUMENT"
    assert f"Invalid protobuf file: '{f}'" in info.value.message
    assert "low_priority_max_batch_size" in info.value.message


class FakeShim:
    def __init__(self):
        self.sizes = []
        self.closed = False
        self.inputs = [("x", "x:0", "float32", [-1, 3])]

    def run(self, feeds):
        self.sizes.append(len(feeds["x"]))
        return {"y": feeds["x"] + 1}

    def close(self):
        self.closed = True


class FakeServable:
    name, version = "m", 1

    def __init__(self):
        self.shims = {"serving_default": FakeShim()}
        self.tf_sizes = []
        self.closed = False

    def run_tensorflow(self, key, feeds):
        self.tf_sizes.append(len(feeds["x"]))
        return {"y": feeds["x"] * 3}

    def close(self):
        for shim in self.shims.values():
            shim.close()
        self.closed = True


def test_servable_batching_wraps_the_shim_and_tensorflow():
    sched = _scheduler()
    s = FakeServable()
    raw_shim = s.shims["serving_default"]
    ServableBatching(sched, QueueOptions(max_batch_size=8, batch_timeout_micros=300_000), s).install()
    xs = [np.full((1, 3), i, np.float32) for i in range(6)]
    outs = [None] * 6

    def go(i):
        outs[i] = (s.shims["serving_default"].run({"x": xs[i]}), s.run_tensorflow("other", {"x": xs[i]}))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for x, (shim_out, tf_out) in zip(xs, outs):
        np.testing.assert_array_equal(shim_out["y"], x + 1)
        np.testing.assert_array_equal(tf_out["y"], x * 3)
    assert max(raw_shim.sizes) > 1 and max(s.tf_sizes) > 1
    assert s.shims["serving_default"].inputs == raw_shim.inputs  # the proxy passes attributes through
    s.close()
    assert raw_shim.closed and s.closed
    sched.stop()
