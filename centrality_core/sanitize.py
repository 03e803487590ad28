"""Make untrusted text safe to show in a terminal, a log line or a JSON document.

Agents send hostnames, labels, metric keys, command output, error reasons and
nvidia-smi screens. Any of it may carry escape sequences that move the cursor,
retitle the window, forge a log line or reorder what a person reads.

* ``for_terminal`` removes ANSI/VT escape sequences (7-bit and 8-bit CSI, OSC,
  DCS, SOS, PM, APC), every other control character except newline and tab,
  and the Unicode bidirectional controls (U+202A-U+202E, U+2066-U+2069, the
  marks U+200E, U+200F, U+061C): text shown to a person reads in the order it
  is stored ("Trojan Source"). A string sequence (OSC, DCS, ...) that is never
  terminated ends at the end of its line, so one bad process name cannot hide
  the rest of a screen.
* ``unsafe`` tells whether a string would be changed by it (used to refuse
  metric keys, which are identifiers and must not be rewritten silently).
* ``clean`` runs ``for_terminal`` over every string of a decoded value
  (msgspec Structs in place, lists, dicts, keys too): the control plane does
  it to every agent message, the operator client to every document.
* ``json_for_terminal`` makes an encoded JSON document safe to print: JSON
  already escapes C0 controls; this escapes C1 controls and bidi controls as
  ``\\uXXXX`` too, so the document still decodes to exactly the same values.
"""

from __future__ import annotations

import re
from typing import Any

# Bidirectional formatting characters: embeddings/overrides, isolates, marks.
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"

# ESC [ ... final byte (or 8-bit CSI U+009B)  |  ESC ] ... BEL or ST  |  ESC P/X/^/_ ... ST
# |  ESC + one char. ST is ESC \ or U+009C. An unterminated string sequence stops at
# the end of its line. The other 8-bit introducers (U+0090, U+009D, ...) are removed
# as control characters: what follows them is then plain text.
_ESCAPES = re.compile(
    r"""
    (?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]                       # CSI
    | \x1b\][^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?            # OSC
    | \x1b[PX^_][^\x1b\x9c\n]*(?:\x1b\\|\x9c)?                 # DCS, SOS, PM, APC
    | \x1b[()*+][0-~]                                      # charset designation: ESC ( B
    | \x1b[ -~]                                            # other two-byte escapes: ESC 7, ESC c
    """,
    re.VERBOSE,
)
_CONTROLS = re.compile(f"[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f{_BIDI}]")
_UNSAFE = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f{_BIDI}]")
# In UTF-8 JSON: C1 controls are C2 80..C2 9F; bidi controls as listed above.
_JSON_UNSAFE = re.compile(f"[\\x80-\\x9f{_BIDI}]")


def for_terminal(text: str, *, keep_newlines: bool = True) -> str:
    """``text`` without escape sequences, control characters or bidi controls."""
    if text.isprintable() and text.isascii():  # the common case: nothing to do
        return text
    if _CONTROLS.search(text) is None:  # e.g. a screen: newlines, tabs, UTF-8, no controls
        # (every escape sequence starts with a control: ESC or a C1 introducer)
        return text if keep_newlines else text.replace("\n", " ").replace("\t", " ")
    text = _CONTROLS.sub("", _ESCAPES.sub("", text))
    if not keep_newlines:
        text = text.replace("\n", " ").replace("\t", " ")
    return text


def clean(value: Any) -> Any:
    """``value`` with every string in it passed through ``for_terminal`` (Structs are changed in place)."""
    if isinstance(value, str):
        return for_terminal(value)
    if isinstance(value, (list, tuple)):
        return type(value)(clean(v) for v in value)
    if isinstance(value, dict):
        return {clean(k): clean(v) for k, v in value.items()}
    fields = getattr(type(value), "__struct_fields__", None)  # a msgspec Struct (msgspec imported lazily)
    if fields is not None:
        for name in fields:
            v = getattr(value, name)
            if isinstance(v, (str, list, tuple, dict)) or hasattr(type(v), "__struct_fields__"):
                setattr(value, name, clean(v))
    return value


def one_line(text: str, limit: int = 256) -> str:
    """A short single line for tables: sanitised, newlines folded, truncated."""
    text = for_terminal(text, keep_newlines=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def unsafe(text: str) -> bool:
    """True when ``text`` holds a control character (newline and tab included) or a bidi control."""
    return _UNSAFE.search(text) is not None


def json_for_terminal(document: str) -> str:
    """An encoded JSON document with C1 and bidi controls escaped (same values once decoded)."""
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", document)


_LOG_UNSAFE = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f{_BIDI}]")


def for_log(text: str) -> str:
    """``text`` on one log line: controls (newlines included) and bidi controls
    shown escaped (``\\n``, ``\\x1b``, ``\\u202e``), so no one can forge a line."""
    if text.isprintable():
        return text
    return _LOG_UNSAFE.sub(lambda m: repr(m.group())[1:-1] if ord(m.group()) < 0x100
                           else f"\\u{ord(m.group()):04x}", text)


#: The format of every log line our processes write (the CLI's and the agent's).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_formatter(fmt: str = LOG_FORMAT):
    """A ``logging.Formatter`` whose messages cannot span lines or carry escapes
    (each record's message passes through ``for_log``; a traceback keeps its lines)."""
    import logging

    class _Formatter(logging.Formatter):
        def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
            record.message = for_log(record.message)
            return super().formatMessage(record)

    return _Formatter(fmt)
