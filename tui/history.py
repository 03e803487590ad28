"""A shell-like history of command lines. Pure.

Up walks back through the lines run before, Down walks forward, and past
the newest one the line being typed comes back (as bash and zsh do). A line
run twice in a row is kept once; the oldest lines go past ``limit``.
"""

from __future__ import annotations


class History:
    def __init__(self, limit: int = 200) -> None:
        self.limit = limit
        self.lines: list[str] = []  # oldest first
        self._pos: int | None = None  # index into lines while walking, None at the draft
        self._draft = ""

    def add(self, line: str) -> None:
        """``line`` was run: remember it and go back to an empty draft."""
        line = line.strip()
        if line and (not self.lines or self.lines[-1] != line):
            self.lines.append(line)
            del self.lines[:-self.limit]
        self.reset()

    def reset(self) -> None:
        self._pos, self._draft = None, ""

    def older(self, current: str) -> str:
        """Up: the line before; ``current`` (what is typed now) is kept as the draft."""
        if not self.lines:
            return current
        if self._pos is None:
            self._draft, self._pos = current, len(self.lines) - 1
        elif self._pos > 0:
            self._pos -= 1
        return self.lines[self._pos]

    def newer(self, current: str) -> str:
        """Down: the line after; past the newest, the draft typed before Up."""
        if self._pos is None:
            return current
        if self._pos < len(self.lines) - 1:
            self._pos += 1
            return self.lines[self._pos]
        self._pos = None
        return self._draft
