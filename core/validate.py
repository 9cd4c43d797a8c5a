"""Output validation: compare a candidate's outputs with the framework's under a stated policy.

Every output of every round is checked, and all mismatches are collected before a
ToleranceError/ShapeMismatchError is raised. For float outputs, a candidate passes when

- ``max|got - ref| <= atol + rtol * max|ref|`` (the tolerance for its dtype, precision and task);
- under reduced precision (bf16, fp16, int8), the mean cosine similarity over the rows of the
  last axis (one embedding, one token's hidden state, one sample's logits), pooled over every
  sample of every round, is at least ``min_cosine``;
- for classifiers (``task`` ``classification``, or ``auto`` with a ``[batch, classes]``
  output), the share of samples whose top-1 class agrees with the framework's is at least
  ``min_top1``.

Integer and bool outputs must match exactly. The numbers, per precision (``auto`` task):

=========  ==========  ==========  ========  ==========
precision  atol        rtol        min top1  mean cos
=========  ==========  ==========  ========  ==========
fp32       1e-4        1e-3        -         -
bf16       2e-2        5e-2        0.90      0.99
fp16       1e-2        2e-2        0.95      0.999
int8       -           -           0.90      0.98
=========  ==========  ==========  ========  ==========

int8 does not bound the largest elementwise error (a quantised network moves every logit a
little); it is judged by cosine similarity and top-1 agreement, the measures quantised models
are accepted on. A ``regression`` task under int8 is held to ``atol`` 1e-3 + ``rtol`` 0.05 and
cosine 0.99 instead; an ``embedding`` task skips the top-1 check.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from .errors import ShapeMismatchError, ToleranceError


@dataclasses.dataclass(frozen=True, kw_only=True)
class Tolerance:
    """Allowed error for one output dtype under one precision policy."""

    atol: float
    rtol: float  # relative to the reference output's largest magnitude
    min_top1: float | None = None  # for [batch, classes] outputs; None = not checked
    min_cosine: float | None = None  # mean over rows of the last axis; None = not checked


# (precision, output dtype name) -> tolerance for the ``auto`` task.
TOLERANCES: dict[tuple[str, str], Tolerance] = {
    ("fp32", "float32"): Tolerance(atol=1e-4, rtol=1e-3),
    ("fp32", "float64"): Tolerance(atol=1e-6, rtol=1e-6),
    ("fp32", "float16"): Tolerance(atol=1e-2, rtol=1e-2),
    ("bf16", "float32"): Tolerance(atol=2e-2, rtol=5e-2, min_top1=0.9, min_cosine=0.99),
    ("bf16", "float64"): Tolerance(atol=2e-2, rtol=5e-2, min_top1=0.9, min_cosine=0.99),
    ("fp16", "float32"): Tolerance(atol=1e-2, rtol=2e-2, min_top1=0.95, min_cosine=0.999),
    ("fp16", "float16"): Tolerance(atol=1e-2, rtol=2e-2, min_top1=0.95, min_cosine=0.999),
    ("int8", "float32"): Tolerance(atol=math.inf, rtol=0.0, min_top1=0.9, min_cosine=0.98),
}
INT8_REGRESSION = Tolerance(atol=1e-3, rtol=0.05, min_cosine=0.99)
EXACT = Tolerance(atol=0.0, rtol=0.0)


def tolerance_for(precision: str, dtype: np.dtype, task: str = "auto") -> Tolerance:
    """The tolerance policy for an output of ``dtype`` under ``precision`` and ``task``."""
    if dtype.kind in "iub":
        return EXACT
    tol = TOLERANCES.get((precision, dtype.name)) or TOLERANCES[(precision, "float32")]
    if task == "regression" and precision == "int8":
        return INT8_REGRESSION
    if task in ("embedding", "regression"):
        return dataclasses.replace(tol, min_top1=None)
    return tol


def row_cosines(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of the last axis (rows that are zero in both are skipped)."""
    r = ref.astype(np.float64).reshape(-1, ref.shape[-1] if ref.ndim else 1)
    g = got.astype(np.float64).reshape(r.shape)
    nr, ng = np.linalg.norm(r, axis=1), np.linalg.norm(g, axis=1)
    live = (nr > 1e-12) | (ng > 1e-12)
    return np.sum(r[live] * g[live], axis=1) / np.maximum(nr[live] * ng[live], 1e-300)


@dataclasses.dataclass(kw_only=True)
class OutputError:
    """Worst error seen on one output across all rounds."""

    name: str
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    top1_agreement: float | None = None  # pooled over every sample of every round
    mean_cosine: float | None = None  # pooled over every row of every round
    min_cosine: float | None = None  # the worst single row, reported
    top1_hits: int = 0
    top1_samples: int = 0
    cosine_sum: float = 0.0
    cosine_rows: int = 0


def compare(
    names: Sequence[str],
    reference: Sequence[np.ndarray],
    candidate: Sequence[np.ndarray],
    precision: str,
    *,
    task: str = "auto",
    errors: dict[str, OutputError] | None = None,
    context: str = "",
) -> list[str]:
    """Compare one round of outputs; update ``errors`` and return mismatch messages (not raise).

    Top-1 agreement and cosine similarity are only accumulated here; :func:`pooled_problems`
    judges them once every round is in.
    """
    errors = errors if errors is not None else {}
    problems: list[str] = []
    where = f" ({context})" if context else ""
    if len(reference) != len(candidate):
        return [f"expected {len(reference)} outputs, got {len(candidate)}{where}"]
    for name, ref, got in zip(names, reference, candidate):
        ref, got = np.asarray(ref), np.asarray(got)
        err = errors.setdefault(name, OutputError(name=name))
        if ref.shape != got.shape:
            problems.append(f"{name}: shape {got.shape} != {ref.shape}{where}")
            continue
        tol = tolerance_for(precision, ref.dtype, task)
        if ref.size == 0:
            continue
        if not np.all(np.isfinite(got) == np.isfinite(ref)):
            problems.append(f"{name}: non-finite values differ from the framework's{where}")
            continue
        finite = np.isfinite(ref)
        diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))[finite]
        max_abs = float(diff.max()) if diff.size else 0.0
        scale = float(np.abs(ref[finite]).max()) if diff.size else 0.0
        rel = max_abs / scale if scale > 0 else max_abs
        err.max_abs_err = max(err.max_abs_err, max_abs)
        err.max_rel_err = max(err.max_rel_err, rel)
        if ref.dtype.kind in "iub":
            if max_abs > 0:
                problems.append(f"{name}: integer/bool outputs differ (max diff {max_abs:g}){where}")
            continue
        limit = tol.atol + tol.rtol * scale
        if math.isfinite(limit) and max_abs > limit:
            problems.append(f"{name}: max abs err {max_abs:.3g} > {limit:.3g} "
                            f"(atol {tol.atol:g} + rtol {tol.rtol:g} x {scale:.3g}){where}")
        if tol.min_cosine is not None:
            cos = row_cosines(ref, got)
            if cos.size:
                low = float(cos.min())
                err.min_cosine = low if err.min_cosine is None else min(err.min_cosine, low)
                err.cosine_sum += float(cos.sum())
                err.cosine_rows += int(cos.size)
                err.mean_cosine = err.cosine_sum / err.cosine_rows
        if tol.min_top1 is not None and ref.ndim == 2 and ref.shape[1] > 1:
            err.top1_hits += int(np.sum(np.argmax(ref, 1) == np.argmax(got, 1)))
            err.top1_samples += ref.shape[0]
            err.top1_agreement = err.top1_hits / err.top1_samples
    return problems


def pooled_problems(errors: dict[str, OutputError], precision: str, task: str = "auto") -> list[str]:
    """Judge the pooled cosine similarity and top-1 agreement of every output."""
    problems = []
    for err in errors.values():
        tol = tolerance_for(precision, np.dtype("float32"), task)
        if err.cosine_rows and tol.min_cosine is not None and err.mean_cosine is not None \
                and err.mean_cosine < tol.min_cosine:
            problems.append(f"{err.name}: mean cosine similarity {err.mean_cosine:.4f} over "
                            f"{err.cosine_rows} rows < {tol.min_cosine} (worst row "
                            f"{err.min_cosine:.4f})")
        if err.top1_samples and tol.min_top1 is not None and err.top1_agreement is not None \
                and err.top1_agreement < tol.min_top1:
            hint = "" if task == "classification" else \
                " (if this output is not class scores, set task=embedding or task=regression)"
            problems.append(f"{err.name}: top-1 agreement {err.top1_agreement:.3f} over "
                            f"{err.top1_samples} samples < {tol.min_top1}{hint}")
    return problems


def weak_references(names: Sequence[str], outputs: Sequence[np.ndarray]) -> list[str]:
    """Name float outputs too close to zero or constant for validation to mean anything."""
    weak = []
    for name, ref in zip(names, outputs):
        ref = np.asarray(ref)
        if ref.dtype.kind != "f" or ref.size < 2:
            continue
        finite = ref[np.isfinite(ref)]
        scale = float(np.abs(finite).max()) if finite.size else 0.0
        if scale < 1e-6 or float(np.ptp(finite)) <= 1e-7 * max(scale, 1e-30):
            weak.append(f"reference output {name!r} is near zero or constant (max |x| "
                        f"{scale:.2g}); validating against it proves little: pass real "
                        "sample_inputs or use trained weights")
    return weak


def raise_if_mismatched(backend: str, problems: list[str]) -> None:
    """Raise the right ValidationError carrying every mismatch, if any."""
    if not problems:
        return
    cls = ShapeMismatchError if all("shape" in p or "outputs, got" in p for p in problems) \
        else ToleranceError
    raise cls(f"{backend} outputs differ from the framework's", problems)
