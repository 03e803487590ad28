"""Small modal questions: "run it on 120 machines?" and "why drain it?"."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

_CSS = """
{cls} {{ align: center middle; }}
{cls} > Vertical {{
    width: 84; max-width: 100%; height: auto;
    border: round $accent; background: $surface; padding: 1 2;
}}
{cls} .question {{ height: auto; margin-bottom: 1; }}
{cls} .problem {{ height: auto; color: $text-error; }}
{cls} Horizontal {{ height: auto; align-horizontal: right; margin-top: 1; }}
{cls} Button {{ margin-left: 2; }}
"""


class ConfirmScreen(ModalScreen[bool]):
    """Yes or no; ``y`` / Enter on "Run" says yes, ``n`` / Escape says no."""

    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]
    DEFAULT_CSS = _CSS.format(cls="ConfirmScreen")

    def __init__(self, title: str, question: Content | str, *, yes: str = "Run") -> None:
        super().__init__()
        self.title_text, self.question, self.yes = title, question, yes

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self.title_text
            yield Static(self.question, classes="question")
            with Horizontal():
                yield Button(f"{self.yes} (y)", variant="warning", id="yes")
                yield Button("Cancel (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()  # Enter alone does not run it on many machines

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ReasonScreen(ModalScreen[str | None]):
    """A required line of text (a drain reason); Escape gives None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = _CSS.format(cls="ReasonScreen")

    def __init__(self, title: str, question: Content | str, *, placeholder: str = "", max_length: int = 1000,
                 required: str = "a reason is required") -> None:
        super().__init__()
        self.title_text, self.question, self.placeholder = title, question, placeholder
        self.max_length, self.required = max_length, required

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self.title_text
            yield Static(self.question, classes="question")
            yield Input(placeholder=self.placeholder, max_length=self.max_length, id="reason")
            yield Static("", classes="problem", id="problem")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        if not text:
            self.query_one("#problem", Static).update(self.required)
            return
        self.dismiss(text)

    def action_cancel(self) -> None:
        self.dismiss(None)
