"""What crosses from the forked child to the pytest process: JSON data, nothing else.

The child runs the code under test, so the parent treats what it sends as
untrusted input: it is decoded with :func:`json.loads` (strings, numbers,
booleans, ``None``, lists and dicts — no class is named, imported or
instantiated), and anything that is not plain data is turned into text in
the child (its ``repr``), while enforcement is still on. Strings that are
not valid UTF-8 (surrogate escapes from file names) survive, escaped.
"""

from __future__ import annotations

import json
from typing import Any


def _text(value: object) -> str:
    """What a value that is not plain data becomes: its ``repr``, or a placeholder."""
    try:
        return repr(value)
    except Exception as exc:  # a __repr__ that raises
        return f"<{type(value).__qualname__} object; repr() failed: {type(exc).__name__}>"


def plain(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON-compatible data; what is not plain becomes its ``repr``.

    Tuples become lists. Dictionary keys that are not strings become their
    ``repr`` too (JSON keys are strings).
    """
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if depth > 50:
        return _text(value)
    if isinstance(value, (list, tuple)):
        return [plain(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {
            (k if isinstance(k, str) else _text(k)): plain(v, depth + 1) for k, v in value.items()
        }
    return _text(value)


def encode(message: dict[str, Any]) -> bytes:
    """The message as bytes; objects that are not plain data are sent as their ``repr``."""
    try:
        text = json.dumps(message, default=_text, ensure_ascii=True, check_circular=True)
    except (TypeError, ValueError):  # non-string keys, a cycle: take the slow, total way
        text = json.dumps(plain(message), ensure_ascii=True)
    return text.encode("ascii")


def decode(payload: bytes, *, utf8: bool = False) -> dict[str, Any]:
    """The message a child sent; ``ValueError`` if it is not a JSON object.

    With ``utf8``, strings that cannot be UTF-8 (lone surrogates, from file
    names that are not UTF-8) are escaped: an xdist worker cannot send them
    (execnet refuses them and loses the report, and the session passes).
    """
    try:
        message = json.loads(payload)
    except (UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(message, dict):
        raise ValueError(f"expected a JSON object, got {type(message).__name__}")
    checked: dict[str, Any] = message
    if utf8 and b"\\ud" in payload:  # ensure_ascii wrote every surrogate as \udXXX
        checked = _utf8(checked)
    return checked


def _utf8(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list):
        return [_utf8(v) for v in value]
    if isinstance(value, dict):
        return {_utf8(k): _utf8(v) for k, v in value.items()}
    return value
