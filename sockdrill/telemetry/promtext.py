"""A fast reader of the Prometheus text exposition format, made for scraping the same targets over and over.

The flight recorder sees the same series text (``name{labels}``) scrape after scrape, so the hot path is
one ``split`` and one dict lookup per line: labels are parsed only the first time a series appears
(:func:`parse_series`). prometheus_client's own parser is about 20× slower per line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
_ESC = re.compile(r"\\[\\\"n]")


def samples(text: str) -> Iterator[tuple[str, float]]:
    """Yield ``(series_text, value)`` for every sample line; comments, blanks and junk are skipped."""
    for line in text.split("\n"):
        if not line or line[0] == "#":
            continue
        brace = line.rfind("}")
        if brace >= 0:
            key = line[: brace + 1]
            rest = line[brace + 1 :].split()
        else:
            parts = line.split()
            if len(parts) < 2:
                continue
            key = parts[0]
            rest = parts[1:]
        if not rest:
            continue
        try:
            value = float(rest[0])
        except ValueError:
            continue
        yield key, value


def parse_series(key: str) -> tuple[str, dict[str, str]] | None:
    """``'name{a="1",b="2"}'`` → ``('name', {'a': '1', 'b': '2'})``; None when it is not a series."""
    brace = key.find("{")
    if brace < 0:
        name = key.strip()
        return (name, {}) if _valid_name(name) else None
    name = key[:brace].strip()
    if not _valid_name(name) or not key.endswith("}"):
        return None
    body = key[brace + 1 : -1]
    labels: dict[str, str] = {}
    pos = 0
    while pos < len(body):
        m = _LABEL.match(body, pos)
        if m is None:
            if body[pos:].strip(" ,"):
                return None
            break
        labels[m.group(1)] = _ESC.sub(lambda e: _UNESCAPE[e.group(0)], m.group(2))
        pos = m.end()
    return name, labels


def _valid_name(name: str) -> bool:
    return bool(name) and re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", name) is not None


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(name: str, labels: dict[str, str], value: float) -> str:
    """One exposition line (used by tests and by the Prometheus side of exports)."""
    inner = ",".join(f'{k}="{escape(v)}"' for k, v in sorted(labels.items()))
    text = "NaN" if math.isnan(value) else ("+Inf" if value == math.inf else repr(float(value)))
    return f"{name}{{{inner}}} {text}" if inner else f"{name} {text}"
