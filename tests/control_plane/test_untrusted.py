"""Which decoded agent messages are walked for strings (untrusted.needs_cleaning)."""

from __future__ import annotations

import typing

import msgspec

from centrality_core import protocol as p
from control_plane.untrusted import needs_cleaning


def test_only_messages_without_any_string_skip_cleaning():
    skipped = {c.__name__ for c in typing.get_args(p.AgentMessage) if not needs_cleaning(c)}
    assert skipped == {"Heartbeat"}



class Inner(msgspec.Struct):
    note: typing.Annotated[str, msgspec.Meta(max_length=8)] = ""


class Deep(msgspec.Struct):
    n: int = 0
    items: list[dict[int, typing.Optional[Inner]]] = []


class Numbers(msgspec.Struct):
    n: int = 0
    x: list[tuple[float, bytes]] = []
    flag: typing.Literal["a", "b"] = "a"  # values fixed by the schema


class Tree(msgspec.Struct):
    n: int = 0
    children: list[Tree] = []


class NamedTree(msgspec.Struct):
    children: list[NamedTree] = []
    name: str = ""


def test_a_string_anywhere_in_a_schema_needs_cleaning():
    assert needs_cleaning(Deep) and needs_cleaning(Inner)
    assert not needs_cleaning(Numbers)
    assert not needs_cleaning(Tree) and needs_cleaning(NamedTree)  # types that contain themselves
