"""``--enable_model_warmup``: replay ``assets.extra/tf_serving_warmup_requests`` before a version serves."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from .errors import ServingError

logger = logging.getLogger(__name__)

REQUESTS_FILE = "tf_serving_warmup_requests"
MAX_RECORDS = 1000


def warmup_file(version_dir: str | Path) -> Path:
    """Where a version's warmup requests live."""
    return Path(version_dir) / "assets.extra" / REQUESTS_FILE


def replay(servable: Any, log: Any) -> None:
    """Run one PredictionLog's request on ``servable`` (its model_spec name and version are ignored)."""
    which = log.WhichOneof("log_type")
    if which == "predict_log":
        req = log.predict_log.request
        key = req.model_spec.signature_name or "serving_default"
        servable.predict(key, dict(req.inputs), list(req.output_filter))
    elif which == "classify_log":
        req = log.classify_log.request
        servable.classify(req.model_spec.signature_name, req.input)
    elif which == "regress_log":
        req = log.regress_log.request
        servable.regress(req.model_spec.signature_name, req.input)
    elif which == "multi_inference_log":
        req = log.multi_inference_log.request
        tasks = [(t.model_spec.name, t.model_spec.signature_name, t.method_name) for t in req.tasks]
        servable.multi_inference(tasks, req.input)
    elif which is not None:
        number = log.DESCRIPTOR.fields_by_name[which].number
        raise ServingError("UNIMPLEMENTED", f"Unsupported log_type for warmup: {number}")


def _records(path: Path) -> Any:
    """The warmup file's PredictionLogs, in order (at most MAX_RECORDS)."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    count = 0
    try:
        for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            log = prediction_log_pb2.PredictionLog()
            try:
                log.ParseFromString(raw)
            except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError
                raise ServingError(
                    "INVALID_ARGUMENT", f"Failed to parse warmup record: {raw!r} from {path}"
                ) from exc
            count += 1
            if count > MAX_RECORDS:
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"Number of warmup records exceeds the maximum ({MAX_RECORDS}) at {path}",
                )
            yield log
    except tf.errors.DataLossError as exc:
        raise ServingError(
            "DATA_LOSS", f"{exc.message}. Please verify your warmup data is in TFRecord format."
        ) from exc


def run_warmup(servable: Any, version_dir: str | Path, *, iterations: int = 1, metrics: Any = None) -> int:
    """Replay the version's warmup file (absent: nothing to do); returns the records read.

    The file is a TFRecord of PredictionLog protos. Each record's request (Predict, Classify, Regress
    or MultiInference) runs against the version being loaded, ``num_request_iterations`` times, as
    TF Serving's saved_model_warmup does: at most 1000 records, any failure fails the load, and the
    elapsed time is recorded as ``/tensorflow/serving/model_warmup_latency``.

    Raises:
        ServingError: a record that does not parse, a request that fails, more than 1000
            records, or a file that is not a TFRecord (DATA_LOSS).
    """
    path = warmup_file(version_dir)
    if not path.exists():
        logger.info("No warmup data file found at %s", path)
        return 0
    iterations = max(int(iterations), 1)
    logger.info(
        "Starting to read warmup data for model at %s with model-warmup-options num_request_iterations: %d",
        path,
        iterations,
    )
    start = time.perf_counter()
    count = 0
    status = "OK"
    try:
        for log in _records(path):
            for _ in range(iterations):
                replay(servable, log)
            count += 1
    except ServingError as exc:
        status = f"{exc.code}: {exc.message}"
        raise
    except Exception as exc:
        status = f"UNKNOWN: {exc}"
        raise
    finally:
        elapsed_us = (time.perf_counter() - start) * 1e6
        if metrics is not None:
            metrics.warmup_latency.observe(str(version_dir), status, value=elapsed_us)
    logger.info(
        "Finished reading warmup data for model at %s. Number of warmup records read: %d. "
        "Elapsed time (microseconds): %d.",
        path,
        count,
        elapsed_us,
    )
    return count
