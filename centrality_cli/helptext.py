"""Help that reads like a person wrote it, applied once to the whole command tree.

typer's defaults show Python types as placeholders (``<list[str]>``, ``{name}``),
cut the command list's descriptions with "...", and add ``[default: 0]`` after
a help text that already says what the default means. ``polish`` fixes all
commands at once, so a new command cannot forget it.
"""

from __future__ import annotations

import re

#: Placeholders for options whose value has a known shape.
_METAVARS = {
    "timeout": "DURATION", "since": "AGE", "until": "AGE", "ttl": "DURATION", "wait": "DURATION",
    "interval": "DURATION", "heartbeat_interval": "DURATION", "limbo_after": "DURATION",
    "dead_after": "DURATION", "label": "KEY=VALUE", "listen": "HOST:PORT", "advertise": "HOST:PORT",
    "address": "HOST:PORT", "max_output": "SIZE", "context": "NAME", "name": "NAME",
}


def polish(group) -> None:
    """Walk the click command tree under ``group`` and fix its help in place."""
    for command in [group, *getattr(group, "commands", {}).values()]:
        if command is not group:
            if not command.short_help and command.help:
                command.short_help = command.help.strip().splitlines()[0]  # whole, never "..."
            polish(command)
            continue
        for param in command.params:
            _param(param)


def _param(param) -> None:
    is_flag = getattr(param, "is_flag", False) or getattr(param, "count", False)
    if getattr(param, "count", False) or re.search(r"\bdefault\b", getattr(param, "help", None) or "", re.I):
        param.show_default = False  # "(default: all). [default: 0]" says it twice
    if param.param_type_name == "argument":
        name = param.metavar or (param.name or "value").upper()
        param.metavar = name
        dots = "..." if param.nargs != 1 else ""
        # typer >= 0.26 writes {NAME} <str> for a required argument: NAME, as man pages do
        usage = f"{name}{dots}" if param.required else f"[{name}{dots}]"
        param.display_type_rich = lambda ctx: None
        param.get_usage_pieces = lambda ctx: [usage]  # click's hook for the usage line
    elif not is_flag and param.metavar is None:
        param.metavar = _METAVARS.get(param.name or "", (param.name or "value").upper().replace("_", "-"))
