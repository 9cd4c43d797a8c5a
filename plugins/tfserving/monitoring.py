"""``--monitoring_config_file``: TF Serving's metrics under their own names, as a Prometheus page."""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Sequence
from typing import Any

from .textproto import StartupError

DEFAULT_PATH = "/monitoring/prometheus/metrics"
# yellowstone's own series (beside TF Serving's): one count per batched run, labelled by model,
# version, signature, runtime (shim / tensorflow) and tasks (one / many).
BATCHES = "yellowstone_tfserving_batches_total"


def exponential_buckets(scale: float, growth: float, count: int) -> tuple[float, ...]:
    """TF's ``Buckets::Exponential``: ``scale * growth**i`` for i < count (then +Inf)."""
    return tuple(scale * growth**i for i in range(count))


def _num(value: float) -> str:
    """A double as absl::StrCat prints it (six significant digits)."""
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return format(value, ".6g")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def prometheus_name(path: str) -> str:
    """``/tensorflow/serving/x`` -> ``:tensorflow:serving:x`` (PrometheusExporter's rule)."""
    name = re.sub(r"[^a-zA-Z0-9_]", ":", path)
    return "_" + name if name[:1].isdigit() else name


class Metric:
    """A counter or histogram with named labels; cells are keyed by label values."""

    def __init__(self, path: str, labels: Sequence[str], kind: str, buckets: Sequence[float] = ()):
        self.path, self.labels, self.kind = path, tuple(labels), kind
        self.buckets = tuple(buckets)
        self._cells: dict[tuple[str, ...], Any] = {}
        self._lock = threading.Lock()

    def inc(self, *values: str, by: float = 1) -> None:
        """Counter: add ``by`` to the cell ``values``."""
        with self._lock:
            self._cells[values] = self._cells.get(values, 0) + by

    def observe(self, *values: str, value: float) -> None:
        """Histogram: add one sample to the cell ``values``."""
        with self._lock:
            cell = self._cells.get(values)
            if cell is None:
                cell = self._cells[values] = [[0] * (len(self.buckets) + 1), 0.0]
            index = next((i for i, limit in enumerate(self.buckets) if value < limit), len(self.buckets))
            cell[0][index] += 1
            cell[1] += value

    def value(self, *values: str) -> Any:
        """A counter's value, or a histogram's (bucket counts, sum); None when never set."""
        with self._lock:
            cell = self._cells.get(values)
            return None if cell is None else (cell if self.kind == "counter" else (list(cell[0]), cell[1]))

    def lines(self) -> list[str]:
        name = prometheus_name(self.path)
        out = [f"# TYPE {name} {self.kind}"]
        with self._lock:
            cells = sorted(self._cells.items())
            for values, cell in cells:
                pairs = [
                    f'{re.sub(r"[^a-zA-Z0-9]", "_", k)}="{_escape(v)}"' for k, v in zip(self.labels, values)
                ]
                labels = ",".join(pairs)
                if self.kind == "counter":
                    out.append(f"{name}{{{labels}}} {int(cell)}")
                    continue
                counts, total = cell
                prefix = f"{name}_bucket{{{labels}{',' if labels else ''}"
                running = 0
                for i, n in enumerate(counts):
                    running += n
                    limit = _num(self.buckets[i]) if i < len(self.buckets) else "+Inf"
                    out.append(f'{prefix}le="{limit}"}} {running}')
                out.append(f"{name}_sum{{{labels}}} {_num(total)}")
                out.append(f"{name}_count{{{labels}}} {running}")
        return out


_LATENCY = exponential_buckets(10, 1.8, 33)  # microseconds, to ~20 minutes


class ServingMetrics:
    """The metrics a TF Serving model server exports, under their TF Serving paths.

    TF Serving registers monitoring metrics under paths (``/tensorflow/serving/request_count``) and
    its PrometheusExporter prints each with ``/`` turned into ``:`` (``:tensorflow:serving:request_count``),
    one ``# TYPE`` line per metric even before it has values, histograms as cumulative ``_bucket``
    lines (a value counts in the first bucket whose limit exceeds it), ``_sum`` and ``_count``. This
    module keeps the same metrics (requests by model and status, request and runtime latency in
    microseconds, examples per Classify/Regress, SavedModel loads, warmup, batching), records them
    from a gRPC interceptor, the REST front, the loader and the batch scheduler, and renders the page
    followed by the core's ``yellowstone_*`` series.
    """

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}
        add = self._add
        self.request_count = add("/tensorflow/serving/request_count", ("model_name", "status"), "counter")
        self.request_latency = add(
            "/tensorflow/serving/request_latency", ("model_name", "API", "entrypoint"), "histogram", _LATENCY
        )
        self.runtime_latency = add(
            "/tensorflow/serving/runtime_latency", ("model_name", "API", "runtime"), "histogram", _LATENCY
        )
        self.example_counts = add(
            "/tensorflow/serving/request_example_counts",
            ("model",),
            "histogram",
            exponential_buckets(1, 2, 15),
        )
        self.example_count_total = add(
            "/tensorflow/serving/request_example_count_total", ("model",), "counter"
        )
        self.request_log_count = add(
            "/tensorflow/serving/request_log_count", ("model_name", "status"), "counter"
        )
        self.warmup_latency = add(
            "/tensorflow/serving/model_warmup_latency", ("model_path", "status"), "histogram", _LATENCY
        )
        self.load_attempts = add(
            "/tensorflow/cc/saved_model/load_attempt_count", ("model_path", "status"), "counter"
        )
        self.load_latency = add("/tensorflow/cc/saved_model/load_latency", ("model_path",), "counter")
        self._add_batching()

    def _add(self, path: str, labels: Sequence[str], kind: str, buckets: Sequence[float] = ()) -> Metric:
        self._metrics[path] = Metric(path, labels, kind, buckets)
        return self._metrics[path]

    def _add_batching(self) -> None:
        """The batching session's metrics."""
        add = self._add
        batch_sizes = exponential_buckets(1, 2, 15)
        self.queuing_latency = add(
            "/tensorflow/serving/batching_session/queuing_latency",
            ("thread_pool_name",),
            "histogram",
            exponential_buckets(100, 1.2, 52),
        )
        self.wrapped_run_count = add("/tensorflow/serving/batching_session/wrapped_run_count", (), "counter")
        self.input_batch_size = add(
            "/tensorflow/serving/batching_session/input_batch_size", (), "histogram", batch_sizes
        )
        self.processed_batch_size = add(
            "/tensorflow/serving/batching_session/processed_batch_size", (), "histogram", batch_sizes
        )
        self.padding_size = add(
            "/tensorflow/serving/batching_session/padding_size",
            ("execution_batch_size",),
            "histogram",
            batch_sizes,
        )

    def metric(self, path: str) -> Metric:
        """A metric by its TF Serving path."""
        return self._metrics[path]

    # -- recording ------------------------------------------------------------------------------
    def record_request(self, model: str, api: str, entrypoint: str, status: str, latency_us: float) -> None:
        """One Predict/Classify/Regress: counted by status; its latency only when OK (as TF Serving)."""
        self.request_count.inc(model, status)
        if status == "OK":
            self.request_latency.observe(model, api, entrypoint, value=latency_us)

    def record_examples(self, model: str, count: int) -> None:
        """The number of tf.Examples in one Classify/Regress request."""
        self.example_counts.observe(model, value=count)
        self.example_count_total.inc(model, by=count)

    def record_load(self, path: str, ok: bool, latency_us: float) -> None:
        """One SavedModel load attempt."""
        self.load_attempts.inc(path, "success" if ok else "fail")
        if ok:
            self.load_latency.inc(path, by=int(latency_us))

    def record_batch(self, stats: Any) -> None:
        """One processed batch (a :class:`.batching.BatchStats`)."""
        self.wrapped_run_count.inc()
        for waited in stats.queued_us:
            self.queuing_latency.observe(stats.thread_pool_name, value=waited)
        for size in stats.task_sizes:
            self.input_batch_size.observe(value=size)
        self.processed_batch_size.observe(value=stats.processed_size)
        self.padding_size.observe(str(stats.processed_size), value=stats.padding)
        if stats.labels:
            from yellowstone import metrics

            tasks = "many" if len(stats.task_sizes) > 1 else "one"
            metrics.emit(BATCHES, 1, tasks=tasks, **stats.labels)

    # -- the page -----------------------------------------------------------------------------
    def page(self) -> str:
        """TF Serving's metrics (sorted by path, as its exporter does), then yellowstone's."""
        from yellowstone.serving import prometheus_text

        lines: list[str] = []
        for path in sorted(self._metrics):
            lines += self._metrics[path].lines()
        return "\n".join(lines) + "\n" + prometheus_text()


@dataclasses.dataclass(frozen=True)
class PrometheusSettings:
    """MonitoringConfig.prometheus_config: whether the page is served, and where."""

    enable: bool = False
    path: str = DEFAULT_PATH


def read_monitoring_config(path: str | None) -> PrometheusSettings:
    """``--monitoring_config_file`` (text MonitoringConfig); empty path -> monitoring off."""
    from .textproto import message_class, parse_text_file

    if not path:
        return PrometheusSettings()
    cfg = parse_text_file(path, message_class("MonitoringConfig")())
    prom = cfg.prometheus_config
    where = prom.path or DEFAULT_PATH
    if not where.startswith("/"):
        raise StartupError("INVALID_ARGUMENT", f"prometheus_config.path must start with '/'; was '{where}'")
    return PrometheusSettings(enable=prom.enable, path=where)


# ----------------------------------------------------------------------------- gRPC interceptor
_COUNTED = {"Predict", "Classify", "Regress"}


def _examples(request: Any) -> int:
    inp = request.input
    which = inp.WhichOneof("kind")
    if which == "example_list":
        return len(inp.example_list.examples)
    if which == "example_list_with_context":
        return len(inp.example_list_with_context.examples)
    return 0


def grpc_interceptor(metrics: ServingMetrics) -> Any:
    """A grpc.ServerInterceptor counting PredictionService calls into ``metrics`` (entrypoint GRPC)."""
    import grpc

    class _Interceptor(grpc.ServerInterceptor):
        def intercept_service(self, continuation: Any, details: Any) -> Any:
            handler = continuation(details)
            service, _, api = details.method.rpartition("/")
            if handler is None or handler.unary_unary is None or api not in _COUNTED:
                return handler
            if not service.endswith("PredictionService"):
                return handler
            behavior = handler.unary_unary

            def counted(request: Any, context: Any) -> Any:
                start = time.perf_counter()
                status = "OK"
                try:
                    response = behavior(request, context)
                    code = context.code()
                    if code is not None and code != grpc.StatusCode.OK:
                        status = code.name
                    elif api != "Predict":
                        metrics.record_examples(request.model_spec.name, _examples(request))
                    return response
                except BaseException:
                    code = context.code()
                    status = code.name if code is not None else "UNKNOWN"
                    raise
                finally:
                    latency = (time.perf_counter() - start) * 1e6
                    metrics.record_request(request.model_spec.name, api, "GRPC", status, latency)

            return grpc.unary_unary_rpc_method_handler(
                counted,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )

    return _Interceptor()
