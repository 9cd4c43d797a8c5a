"""Output validation: compare a candidate's outputs with the framework's under a stated tolerance.

A candidate output passes when ``max|got - ref| <= atol + rtol * max|ref|`` for its dtype and
the precision policy. Reduced precision additionally requires top-1 agreement on outputs shaped
like classifier logits ``[batch, classes]``. Every output of every round is checked, and all
mismatches are collected before a ToleranceError/ShapeMismatchError is raised.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from .errors import ShapeMismatchError, ToleranceError


@dataclasses.dataclass(frozen=True, kw_only=True)
class Tolerance:
    """Allowed error for one output dtype under one precision policy."""

    atol: float
    rtol: float  # relative to the reference output's largest magnitude
    min_top1: float | None = None  # for [batch, classes] outputs; None = not checked


# (precision, output dtype kind) -> tolerance. "f" = floating point, "i"/"u"/"b" = exact.
TOLERANCES: dict[tuple[str, str], Tolerance] = {
    ("fp32", "float32"): Tolerance(atol=1e-4, rtol=1e-3),
    ("fp32", "float64"): Tolerance(atol=1e-6, rtol=1e-6),
    ("fp32", "float16"): Tolerance(atol=1e-2, rtol=1e-2),
    ("bf16", "float32"): Tolerance(atol=2e-2, rtol=5e-2, min_top1=0.9),
    ("bf16", "float64"): Tolerance(atol=2e-2, rtol=5e-2, min_top1=0.9),
    ("fp16", "float32"): Tolerance(atol=1e-2, rtol=2e-2, min_top1=0.95),
    ("fp16", "float16"): Tolerance(atol=1e-2, rtol=2e-2, min_top1=0.95),
}
EXACT = Tolerance(atol=0.0, rtol=0.0)


def tolerance_for(precision: str, dtype: np.dtype) -> Tolerance:
    """The tolerance policy for an output of ``dtype`` under ``precision``."""
    if dtype.kind in "iub":
        return EXACT
    return TOLERANCES.get((precision, dtype.name)) or TOLERANCES[(precision, "float32")]


@dataclasses.dataclass(kw_only=True)
class OutputError:
    """Worst error seen on one output across all rounds."""

    name: str
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    top1_agreement: float | None = None


def compare(
    names: Sequence[str],
    reference: Sequence[np.ndarray],
    candidate: Sequence[np.ndarray],
    precision: str,
    *,
    errors: dict[str, OutputError] | None = None,
    context: str = "",
) -> list[str]:
    """Compare one round of outputs; update ``errors`` and return mismatch messages (not raise)."""
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
        tol = tolerance_for(precision, ref.dtype)
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
        if max_abs > limit:
            problems.append(f"{name}: max abs err {max_abs:.3g} > {limit:.3g} "
                            f"(atol {tol.atol:g} + rtol {tol.rtol:g} x {scale:.3g}){where}")
        if tol.min_top1 is not None and ref.ndim == 2 and ref.shape[1] > 1:
            agree = float(np.mean(np.argmax(ref, 1) == np.argmax(got, 1)))
            err.top1_agreement = agree if err.top1_agreement is None else min(err.top1_agreement, agree)
            if agree < tol.min_top1:
                problems.append(f"{name}: top-1 agreement {agree:.3f} < {tol.min_top1}{where}")
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
