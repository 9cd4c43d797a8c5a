"""One bad request fails alone: split a TorchServe batch that failed.

A batch fails as a whole when one request breaks it: a ``preprocess`` that stacks the rows into
one tensor fails on a row of the wrong length, a model raises on the stacked tensor's shape
(the framework's own error, a 500, when it serves). Each row of such a batch is preprocessed
alone; a row refused alone fails alone; the others are grouped by what their preprocessed input
looks like (tensor shapes and dtypes) and each group is served as one smaller batch; a group
that still fails is served row by row. Every good request is answered; every request that fails
alone gets TorchServe's error body with its own status (4xx for the client's error, 5xx for a
fault of the server, as the same request sent alone would).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import failure, prediction_exception, set_error

logger = logging.getLogger(__name__)

Serve = Callable[[list, Any], list]  # (rows, context of those rows) -> one answer per row


class SubsetContext:
    """The worker context seen through a subset of the batch (index j -> original index)."""

    def __init__(self, context: Any, indices: Sequence[int]):
        self._context = context
        self._indices = list(indices)
        ids = context.request_ids or {}
        self.request_ids = {j: ids.get(i) for j, i in enumerate(self._indices)}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    def get_request_id(self, idx: int = 0) -> Any:
        return self.request_ids.get(idx)

    def get_request_header(self, idx: int, key: str) -> Any:
        return self._context.get_request_header(self._indices[idx], key)

    def get_all_request_header(self, idx: int) -> Any:
        return self._context.get_all_request_header(self._indices[idx])

    def set_response_content_type(self, idx: int, value: str) -> None:
        self._context.set_response_content_type(self._indices[idx], value)

    def get_response_content_type(self, idx: int) -> Any:
        return self._context.get_response_content_type(self._indices[idx])

    def get_response_headers(self, idx: int) -> Any:
        return self._context.get_response_headers(self._indices[idx])

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self._context.set_response_header(self._indices[idx], key, value)

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self._context.set_response_status(code, phrase, self._indices[idx])


def signature(value: Any, depth: int = 0) -> Any:
    """What rows must share to be batched together: the shapes and dtypes of their tensors."""
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        return ("array", str(dtype), tuple(shape))
    if depth > 8:
        return ("object", type(value).__name__)
    if isinstance(value, Mapping):
        return ("map", tuple((str(k), signature(v, depth + 1)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return ("seq", len(value), tuple(signature(v, depth + 1) for v in value[:16]))
    return ("object", type(value).__name__)


class BatchIsolator:
    """Serves a batch that failed, failing only the requests at fault.

    ``preprocess(rows)`` is the wrapped handler's own (it raises for a row it refuses);
    ``serve(rows, context)`` runs the whole handler on some rows of the batch.
    """

    def __init__(self, name: str, preprocess: Callable[[list], Any], serve: Serve):
        self.name = name
        self._preprocess = preprocess
        self._serve = serve

    def __call__(self, data: list, context: Any) -> list:
        """One answer per request: the good ones served, the others their own error body."""
        failed: dict[int, tuple[int, str]] = {}
        groups: dict[Any, list[int]] = {}
        for i, row in enumerate(data):
            try:
                key = signature(self._preprocess([row]))
            except Exception as exc:  # noqa: BLE001 - this row fails alone, with its status
                failed[i] = failure(exc)
                continue
            groups.setdefault(key, []).append(i)
        results: list[Any] = [None] * len(data)
        pending = list(groups.values())
        served = 0
        while pending:
            indices = pending.pop()
            try:
                answers = self._serve([data[i] for i in indices], SubsetContext(context, indices))
            except Exception as exc:  # noqa: BLE001 - find the rows at fault
                if len(indices) == 1:
                    failed[indices[0]] = failure(exc)
                else:  # these rows look alike yet fail together: serve them one by one
                    pending.extend([i] for i in indices)
                continue
            if len(answers) != len(indices):
                raise prediction_exception(f"the handler answered {len(answers)} of "
                                           f"{len(indices)} requests", 500)
            for i, answer in zip(indices, answers):
                results[i] = answer
            served += len(indices)
        for i, (code, message) in sorted(failed.items()):
            results[i] = set_error(context, i, code, message)
        logger.info("%s: batch of %d failed; %d request(s) failed alone "
                    "(%s), the other %d were served", self.name, len(data), len(failed),
                    "; ".join(sorted({f"{c}: {m[:160]}" for c, m in failed.values()})) or "-",
                    served)
        return results
