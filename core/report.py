"""The boost report: every candidate tried, why it won or lost, and which backend serves."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from .errors import CacheError


@dataclasses.dataclass(kw_only=True)
class Candidate:
    """One backend's outcome.

    status: ``chosen`` (serves), ``ok`` (valid but slower), ``rejected`` (outputs differ),
    ``failed`` (conversion/compile/run error), ``unavailable`` (not installed / not applicable).
    """

    backend: str
    status: str = "failed"
    reason: str = ""
    version: str | None = None
    compile_s: float | None = None
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    top1_agreement: float | None = None  # reduced precision: pooled over every validation sample
    mean_cosine: float | None = None  # reduced precision: pooled over rows, worst output
    p50_ms: float | None = None  # at the first served batch size
    p90_ms: float | None = None
    latency_ms: dict[int, dict[str, float]] = dataclasses.field(default_factory=dict)  # per batch
    buckets: list[int | None] | None = None  # None: dynamic batch; [1, 8, None]: both
    cache: str | None = None  # "hit" / "miss" for the artifact

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (the contract of ``--json``)."""
        d = dataclasses.asdict(self)
        d["latency_ms"] = {str(k): v for k, v in self.latency_ms.items()}
        return d


@dataclasses.dataclass(kw_only=True)
class Report:
    """What ``boost`` did. ``chosen`` is the backend serving right now.

    ``dispatch`` maps each served batch size to the backend serving it now (with ``per_batch``
    dispatch, each size's fastest; with ``single``, ``chosen`` for every size; empty for a model
    without a batch dimension); ``chosen`` is the one serving the first size.
    """

    model: str
    chosen: str = "native"
    precision: str = "fp32"
    task: str = "auto"
    calibration: str = ""  # int8: where the calibration inputs came from
    cache: str = "miss"
    load_s: float = 0.0
    fingerprint: str = ""
    hardware: str = ""
    batch_sizes: list[int] = dataclasses.field(default_factory=lambda: [1])
    inputs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    outputs: list[str] = dataclasses.field(default_factory=list)
    candidates: list[Candidate] = dataclasses.field(default_factory=list)
    fallback_reason: str = ""
    warnings: list[str] = dataclasses.field(default_factory=list)
    speedup: float | None = None  # native p50 / chosen p50 at the first batch size
    dispatch: dict[int, str] = dataclasses.field(default_factory=dict)  # batch size -> backend
    # bf16/fp16/int8 asked for, but no candidate at that precision beat native: the report of
    # that search; this report is then the fp32 search's that serves instead
    precision_fallback: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        d = dataclasses.asdict(self)
        d["candidates"] = [c.to_dict() for c in self.candidates]
        d["dispatch"] = {str(k): v for k, v in sorted(self.dispatch.items())}
        return d

    def to_json(self, **kw: Any) -> str:
        """JSON text."""
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """Inverse of :meth:`to_dict` (unknown keys ignored, for forward compatibility)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        cfields = {f.name for f in dataclasses.fields(Candidate)}
        kw = {k: v for k, v in data.items() if k in fields and k != "candidates"}
        cands = []
        for c in data.get("candidates", []):
            c = {k: v for k, v in c.items() if k in cfields}
            c["latency_ms"] = {int(k): v for k, v in c.get("latency_ms", {}).items()}
            cands.append(Candidate(**c))
        kw["dispatch"] = {int(k): str(v) for k, v in (data.get("dispatch") or {}).items()}
        return cls(candidates=cands, **kw)

    def candidate(self, backend: str) -> Candidate | None:
        """The candidate entry for ``backend``."""
        return next((c for c in self.candidates if c.backend == backend), None)

    def table(self) -> str:
        """A fixed-width table: one row per backend, one latency column per batch size."""
        sizes = self.batch_sizes
        reduced = self.precision != "fp32"  # show what the precision costs in accuracy
        serves = {c.backend: ",".join(f"b{b}" for b, name in sorted(self.dispatch.items())
                                      if name == c.backend) for c in self.candidates}
        per_batch = len(set(self.dispatch.values())) > 1
        head = ["backend", "status", "compile s", "max abs err"] + \
            (["serves"] if per_batch else []) + \
            (["top-1 agree", "mean cosine"] if reduced else []) + \
            [f"p50 ms b{b}" for b in sizes] + [f"p90 ms b{b}" for b in sizes] + ["reason"]
        rows = []
        for c in self.candidates:
            lat = [c.latency_ms.get(b, {}) for b in sizes]
            rows.append([
                c.backend, c.status, _fmt(c.compile_s, ".1f"), _fmt(c.max_abs_err, ".1e"),
                *([serves[c.backend] or "-"] if per_batch else []),
                *([_fmt(c.top1_agreement, ".3f"), _fmt(c.mean_cosine, ".4f")] if reduced else []),
                *[_fmt(x.get("p50_ms"), ".2f") for x in lat],
                *[_fmt(x.get("p90_ms"), ".2f") for x in lat],
                (c.reason[:90] + "...") if len(c.reason) > 93 else c.reason,
            ])
        widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
        lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip()
                 for r in [head, *rows]]
        lines.insert(1, "  ".join("-" * w for w in widths))
        summary = (f"model {self.model}: serving on {self.chosen} ({self.precision}), "
                   f"cache {self.cache}, {self.load_s:.2f} s")
        if self.calibration:
            summary += f"; int8 calibration {self.calibration}"
        if self.speedup:
            summary += f", {self.speedup:.2f}x native at batch {sizes[0]}"
        if per_batch:
            summary += "; per batch: " + ", ".join(
                f"b{b} {name}" for b, name in sorted(self.dispatch.items()))
        if self.fallback_reason:
            summary += f"; fallback: {self.fallback_reason}"
        notes = [f"warning: {w}" for w in self.warnings]
        return "\n".join([summary, *notes, *lines])

    def __str__(self) -> str:
        return self.table()


def stored_report(data: Mapping[str, Any]) -> Report:
    """A report read back from a decision or an artifact; CacheError when it is malformed."""
    try:
        return Report.from_dict(dict(data))
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise CacheError(f"stored report is malformed: {type(exc).__name__}: {exc}") from exc


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
