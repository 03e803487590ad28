"""Help text, as `centrality ... --help` prints it at 80 columns (issue 15, item 11)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import typer

from tests.conftest import REPO


def _tree():
    from centrality_cli import helptext
    from centrality_cli.main import app

    root = typer.main.get_command(app)
    helptext.polish(root)
    out = []

    def walk(cmd, path):
        out.append(path)
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, path + [name])

    walk(root, [])
    return root, out


def _help(root, path):
    """What `centrality PATH --help` prints at 80 columns."""
    ctx = root.make_context("centrality", [], resilient_parsing=True, max_content_width=80, terminal_width=80)
    cmd = root
    for name in path:
        cmd = cmd.commands[name]
        ctx = cmd.make_context(name, [], parent=ctx, resilient_parsing=True)
    return cmd.get_help(ctx)


def test_every_help_reads_like_a_person_wrote_it():
    root, paths = _tree()
    assert len(paths) > 20
    for path in paths:
        text = _help(root, path)
        where = " ".join(path) or "centrality"
        assert not re.search(r"<(str|int|float|path|list\[[a-z]+\]|[a-z ]+ range)>", text), (where, text)
        assert not re.search(r"\{[A-Za-z_]+\}", text.split("\n\n")[0]), (where, text)  # the usage line
        assert not re.search(r"default[^\n\[]*\)\.?\s*\[default:", text), (where, text)


def test_command_list_is_not_cut():
    root, _ = _tree()
    for group in [root, root.commands["machines"], root.commands["keys"]]:
        listing = " ".join(_help(root, [] if group is root else [group.name]).split("Commands:", 1)[1].split())
        for name, cmd in group.commands.items():
            first = " ".join(cmd.help.strip().splitlines()[0].split())
            assert f"{name} {first}" in listing, (name, first, listing)


def test_usage_errors_are_one_line():
    proc = subprocess.run([sys.executable, "-m", "centrality_cli", "machines", "drain", "gpu-01"],
                          cwd=REPO, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: missing option '--reason' / '-r' (see `centrality machines drain --help`)"]
    assert proc.stdout == ""


@pytest.mark.parametrize("path", [["exec"], ["machines", "label"], ["metrics"]])
def test_placeholders(path):
    root, _ = _tree()
    text = _help(root, path)
    assert "(default: all).  [default: 0]" not in text
    usage = text.splitlines()[0]
    assert "{" not in usage and "<" not in usage
