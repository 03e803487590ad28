"""The ``centrality`` command line (typer). ``main.py`` is thin; each command
group lives in ``commands/``. Heavy modules (asyncssh, the control plane, the
store, Textual, pyinfra) are imported inside the commands that need them, so
``centrality --help`` stays fast."""
