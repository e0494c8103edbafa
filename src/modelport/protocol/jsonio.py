"""Strict, fast JSON for request bodies: orjson plus the checks a server needs.

orjson already refuses truncated documents, trailing bytes, invalid UTF-8, ``NaN`` and
``Infinity`` tokens and nesting deeper than 1024. On top of that, :func:`loads`

- limits nesting to ``max_depth`` (default 100) with an iterative walk, so a body
  nested 10⁵ deep is a 400 and never a recursion crash;
- refuses duplicate object keys (``{"a": 1, "a": 2}``), which orjson would silently
  resolve to the last one — a classic parser-differential hole.

The duplicate check is cheap in the common case: the number of ``:`` bytes in a valid
document is at least its number of keys, and the walk counts the members it parsed;
only when the two differ (colons inside strings, or a real duplicate) is the exact,
slower check run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import orjson

from modelport.core.errors import InvalidArgument

#: Default limit on how deeply objects and arrays may nest in a request body.
DEFAULT_MAX_DEPTH = 100

_KEY = re.compile(rb'"(?:[^"\\]++|\\.)*+"(\s*+:)?')
_SCALARS = (str, int, float, bool, type(None))


def loads(
    body: bytes | bytearray | memoryview | str,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    what: str = "request body",
    allow_nan: bool = False,
    members: Callable[[Any], int] | None = None,
) -> Any:
    """Parse JSON strictly; every malformation is an :class:`InvalidArgument`.

    ``allow_nan`` accepts the ``NaN``/``Infinity``/``-Infinity`` tokens that TF Serving
    allows (through the slower standard-library parser, only when orjson refuses).
    ``members`` lets a caller that knows where its objects are count their members
    (``len`` of each dict) instead of walking the whole document; objects it does not
    count only send the duplicate check down its exact, slower path.

    Example:
        >>> loads(b'{"inputs": []}')
        {'inputs': []}
        >>> loads(b'{"a": 1, "a": 2}')
        Traceback (most recent call last):
        ...
        modelport.core.errors.InvalidArgument: malformed JSON in request body: duplicate key 'a'
    """
    raw = body if isinstance(body, bytes) else _as_bytes(body)
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        msg = str(e)
        if allow_nan and "unexpected character" in msg:
            obj = _loads_stdlib(raw, what)
        elif "depth limit" in msg or "recursion" in msg:
            raise InvalidArgument(
                f"malformed JSON in {what}: nesting depth > {max_depth}"
            ) from None
        else:
            raise InvalidArgument(f"malformed JSON in {what}: {msg}") from None
    if members is None or raw.count(b"[") + raw.count(b"{") > max_depth:
        # only a document with more openers than the limit can nest deeper than it
        count = _walk(obj, max_depth, what)
    else:
        count = members(obj)
    if raw.count(b":") != count and _count_keys(raw) != count:
        _find_duplicate(raw, what)
    return obj


def _as_bytes(body: bytearray | memoryview | str) -> bytes:
    return body.encode() if isinstance(body, str) else bytes(body)


def dumps(obj: Any) -> bytes:
    """Serialise to compact JSON bytes; numpy arrays (C-contiguous) are written natively.

    Example:
        >>> dumps({"ready": True})
        b'{"ready":true}'
    """
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


def count_bool_tokens(body: bytes | bytearray | memoryview) -> int:
    """How many ``true``/``false`` tokens the text may hold (an upper bound, cheap)."""
    raw = body if isinstance(body, (bytes, bytearray)) else bytes(body)
    return raw.count(b"true") + raw.count(b"false")


def _walk(obj: Any, max_depth: int, what: str) -> int:
    """Check nesting depth iteratively; return the number of object members seen.

    A list whose first element is a scalar is taken as a list of scalars and not
    entered (data arrays are long); anything nested behind a scalar is caught later by
    the tensor conversion, which refuses ragged or mixed data.
    """
    members = 0
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise InvalidArgument(f"malformed JSON in {what}: nesting depth > {max_depth}")
        if isinstance(node, dict):
            members += len(node)
            for v in node.values():
                if isinstance(v, (dict, list)):
                    stack.append((v, depth + 1))
        elif node and not isinstance(node[0], _SCALARS):
            stack.extend((v, depth + 1) for v in node if isinstance(v, (dict, list)))
    return members


def _count_keys(raw: bytes) -> int:
    return sum(1 for m in _KEY.finditer(raw) if m.group(1))


def _find_duplicate(raw: bytes, what: str) -> None:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for k, v in pairs:
            if k in seen:
                raise InvalidArgument(f"malformed JSON in {what}: duplicate key {k[:60]!r}")
            seen[k] = v
        return seen

    try:
        json.loads(raw, object_pairs_hook=hook)
    except RecursionError:
        raise InvalidArgument(f"malformed JSON in {what}: nesting too deep") from None
    except ValueError:  # pragma: no cover - orjson accepted it, so the stdlib does too
        raise InvalidArgument(f"malformed JSON in {what}") from None


def _loads_stdlib(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise InvalidArgument(f"malformed JSON in {what}: nesting too deep") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"malformed JSON in {what}: {e}") from None
