"""Make untrusted text safe to show in a terminal.

Agents send hostnames, labels, command output and nvidia-smi screens. Any of
it may carry escape sequences that move the cursor, retitle the window or
worse. ``for_terminal`` removes ANSI/VT escape sequences (CSI, OSC, DCS, ...)
and every other control character except newline and tab.
"""

from __future__ import annotations

import re

# ESC [ ... final byte   |  ESC ] ... BEL or ESC \  |  ESC P/X/^/_ ... ESC \  |  ESC + one char
_ESCAPES = re.compile(
    r"""
    \x1b\[[0-?]*[ -/]*[@-~]            # CSI
    | \x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?  # OSC
    | \x1b[PX^_][^\x1b]*(?:\x1b\\)?    # DCS, SOS, PM, APC
    | \x1b[()*+][0-~]                  # charset designation: ESC ( B
    | \x1b[ -~]                        # other two-byte escapes: ESC 7, ESC c, ESC =
    | \x9b[0-?]*[ -/]*[@-~]            # 8-bit CSI
    """,
    re.VERBOSE,
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def for_terminal(text: str, *, keep_newlines: bool = True) -> str:
    """``text`` without escape sequences or control characters."""
    text = _CONTROLS.sub("", _ESCAPES.sub("", text))
    if not keep_newlines:
        text = text.replace("\n", " ").replace("\t", " ")
    return text


def one_line(text: str, limit: int = 256) -> str:
    """A short single line for tables: sanitised, newlines folded, truncated."""
    text = for_terminal(text, keep_newlines=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"
