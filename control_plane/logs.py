"""Loggers with per-connection context, as ``[agent=gpu-07 conn=12] message``."""

from __future__ import annotations

import logging


class Contextual(logging.LoggerAdapter):
    def process(self, msg, kwargs):
        return f"[{self.extra['ctx']}] {msg}", kwargs


def contextual(name: str, ctx: str) -> Contextual:
    return Contextual(logging.getLogger(name), {"ctx": ctx})
