"""The cached decision: what a search chose, as written to the cache and read back from it."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from .cache import is_bucket_list
from .dispatch import NATIVE
from .errors import CacheError
from .report import Report, stored_report


@dataclasses.dataclass(frozen=True)
class Decision:
    """A cached decision: the first size's backend and buckets, the dispatch, the report.

    ``dispatch`` (batch size -> backend) and ``routes`` (every other dispatched backend -> its
    buckets) are empty in a decision of one backend, and in those written before dispatch.
    """

    backend: str
    buckets: list[int | None]
    report: Report
    dispatch: dict[int, str]
    routes: dict[str, list[int | None]]


def decision_record(report: Report) -> dict[str, Any]:
    """What the cache stores of a search's ``report`` (the JSON form :func:`read_decision` reads)."""
    def buckets(name: str) -> list[int | None] | None:
        cand = report.candidate(name)
        return cand.buckets if cand is not None and name != NATIVE else None

    extras = sorted(set(report.dispatch.values()) - {report.chosen, NATIVE})
    return {"backend": report.chosen, "buckets": buckets(report.chosen),
            "dispatch": {str(b): n for b, n in sorted(report.dispatch.items())},
            "routes": {name: buckets(name) for name in extras}, "report": report.to_dict()}


def read_decision(decision: Any, names: Sequence[str]) -> Decision:
    """Read a cached decision; CacheError when it is malformed."""
    if not isinstance(decision, dict):
        raise CacheError(f"the decision is a {type(decision).__name__}, not a mapping")
    problems = []
    name = decision.get("backend")
    dispatch, routes = decision.get("dispatch") or {}, decision.get("routes") or {}

    if not isinstance(name, str) or (name != NATIVE and name not in names):
        problems.append(f"backend {name!r} is not a candidate of this run")
    if not is_bucket_list(decision.get("buckets")):
        problems.append(f"buckets {decision.get('buckets')!r} is neither null nor a list of "
                        "batch sizes (and at most one null, the dynamic batch)")
    if not (isinstance(routes, dict) and all(n in names and is_bucket_list(b)
                                             for n, b in routes.items())):
        problems.append(f"routes {routes!r} do not map candidates to their buckets")
        routes = {}
    known = {str(name), NATIVE, *routes}
    if not (isinstance(dispatch, dict) and all(
            isinstance(b, str) and b.isdecimal() and int(b) > 0 and isinstance(n, str) and n in known
            for b, n in dispatch.items())):
        problems.append(f"dispatch {dispatch!r} does not map batch sizes to its backends")
    if not isinstance(decision.get("report"), dict):
        problems.append("report is not a mapping")
    if problems:
        raise CacheError("malformed decision: " + "; ".join(problems))

    def keys(buckets: list[int] | None) -> list[int | None]:
        return [None] if buckets is None else list(buckets)

    return Decision(str(name), keys(decision.get("buckets")), stored_report(decision["report"]),
                    {int(b): n for b, n in dispatch.items()},
                    {n: keys(b) for n, b in routes.items()})
