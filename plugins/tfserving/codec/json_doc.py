"""A REST body as TF Serving's ParseJson reads it: one JSON object, rapidjson's errors, bounded nesting."""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

from ..errors import ServingError
from .json_values import json_text

try:  # the fast path: a C parser whose numbers follow rapidjson's rules (see parse_json)
    import orjson
except ImportError:  # pragma: no cover - orjson comes with the tfserving extra
    orjson = None

# json's C parser recurses once per level of nesting, bounded by the interpreter's recursion limit
# (a RecursionError, answered 400). Where that limit is raised past what a thread's stack holds,
# documents are first scanned (outside strings) and nesting past DEPTH_LIMIT is refused.
DEPTH_LIMIT = 256  # a tensor's rank is at most 254
_SAFE_RECURSION = 4000
_BRACKETS = re.compile(rb"[\[\]{}]")
_PY_TO_RAPIDJSON = {  # json's messages -> rapidjson's (GetParseError_En), as TF Serving words them
    "Expecting value": "Invalid value.",
    "Expecting property name enclosed in double quotes": "Missing a name for object member.",
    "Expecting ':' delimiter": "Missing a colon after a name of object member.",
    "Expecting ',' delimiter": "Missing a comma or ']' after an array element.",
    "Extra data": "The document root must not be followed by other values.",
    "Unterminated string starting at": "Missing a closing quotation mark in string.",
    "Invalid control character at": "Invalid encoding in string.",
    "Invalid \\escape": "Invalid escape character in string.",
    "Invalid \\uXXXX escape": "Incorrect hex digit after \\u escape in string.",
}


class _TooBig(Exception):
    """A number out of double's range (rapidjson: kParseErrorNumberTooBig)."""

    def __init__(self, literal: str):
        super().__init__(literal)
        self.literal = literal


def _parse_float(s: str) -> float:
    v = float(s)
    if math.isinf(v):
        raise _TooBig(s)
    return v


def _parse_int(s: str) -> int | float:
    # rapidjson stores integers outside [-2^63, 2^64) as doubles.
    if len(s) <= 20:
        v = int(s)
        if -(1 << 63) <= v < (1 << 64):
            return v
    return _parse_float(s)


def _parse_constant(s: str) -> float:
    return float(s)  # NaN, Infinity, -Infinity: rapidjson's kParseNanAndInfFlag takes them


def _too_deep(body: bytes) -> int | None:
    """Offset of the first array or object nested past DEPTH_LIMIT (strings skipped), else None."""
    depth, pos, n = 0, 0, len(body)
    while pos < n:
        quote = body.find(b'"', pos)
        for m in _BRACKETS.finditer(body, pos, n if quote < 0 else quote):
            if m.group() in (b"[", b"{"):
                depth += 1
                if depth > DEPTH_LIMIT:
                    return m.start()
            else:
                depth -= 1
        if quote < 0:
            return None
        end = quote
        while True:  # the closing quote: one not escaped by an odd run of backslashes
            end = body.find(b'"', end + 1)
            if end < 0:
                return None
            k = 0
            while body[end - 1 - k] == 0x5C:
                k += 1
            if k % 2 == 0:
                break
        pos = end + 1
    return None


def parse_json(body: bytes) -> dict[str, Any]:
    """Parse a request body as TF Serving's ParseJson does: a JSON object, its numbers in range.

    Raises:
        ServingError: INVALID_ARGUMENT, worded ``JSON Parse error: ...`` as rapidjson reports.
    """
    if not body:
        raise ServingError("INVALID_ARGUMENT", "JSON Parse error: The document is empty")
    if sys.getrecursionlimit() > _SAFE_RECURSION and body.count(b"[") + body.count(b"{") > DEPTH_LIMIT:
        offset = _too_deep(body)
        if offset is not None:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"JSON Parse error: The document nests arrays and objects deeper than {DEPTH_LIMIT} "
                f"levels. at offset: {offset}",
            )
    doc = _parse_fast(body)
    if doc is _REFUSED:
        doc = _parse_exact(body)
    if not isinstance(doc, dict):
        raise ServingError("INVALID_ARGUMENT", f"JSON Value: {json_text(doc)} Is not object")
    return doc


_REFUSED = object()


def _parse_fast(body: bytes) -> Any:
    """The body as orjson reads it, or ``_REFUSED`` for the exact path to word the error.

    orjson reads numbers as rapidjson does (integers outside [-2^63, 2^64) as doubles) and
    refuses what the exact path words as rapidjson would (NaN and Infinity, which TF Serving
    takes; a number past double's range; bad UTF-8 or escapes). It parses an image body several
    times faster than the exact path (README, "Where a request's time goes").
    """
    if orjson is None:
        return _REFUSED
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return _REFUSED


def _parse_exact(body: bytes) -> Any:
    """``json`` with rapidjson's number rules, every failure worded as TF Serving's ParseJson."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ServingError(
            "INVALID_ARGUMENT", f"JSON Parse error: Invalid encoding in string. at offset: {exc.start}"
        ) from exc
    try:
        doc = json.loads(text, parse_float=_parse_float, parse_int=_parse_int, parse_constant=_parse_constant)
    except json.JSONDecodeError as exc:
        reason = next((v for k, v in _PY_TO_RAPIDJSON.items() if exc.msg.startswith(k)), exc.msg)
        raise ServingError("INVALID_ARGUMENT", f"JSON Parse error: {reason} at offset: {exc.pos}") from exc
    except _TooBig as exc:
        raise ServingError(
            "INVALID_ARGUMENT",
            "JSON Parse error: Number too big to be stored in double. "
            f"at offset: {max(text.find(exc.literal), 0)}",
        ) from exc
    except RecursionError as exc:
        raise ServingError(
            "INVALID_ARGUMENT", "JSON Parse error: The document nests arrays and objects too deeply."
        ) from exc
    return doc


def may_hold_booleans(body: bytes) -> bool:
    """False when ``body`` has no ``true``/``false`` token, so numeric lists can be read in bulk."""
    return b"true" in body or b"false" in body
