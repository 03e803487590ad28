"""Where a control plane's CPU goes, from a py-spy profile in collapsed-stack form.

``bench/fleet.py --profile-dir DIR`` records the control plane with
``py-spy record --format raw`` during the first join and each storm; this
sorts each sample into one cost, the first that matches from the list below
(what the sample's stack passed through), and prints the shares:

    python -m bench.profile_summary DIR/storm-kill-2000.txt

Samples whose stack py-spy could not read (native code only, or caught while
changing) are counted apart and left out of the shares.
"""

from __future__ import annotations

import argparse
from collections import Counter

#: (cost, substrings of a frame), in the order a sample is tested against them.
COSTS = [
    ("store: enrolment (SQLite + SQLAlchemy)", ["Store.enrol", "Store.unenrol"]),
    ("store: key lookups", ["Store.find_key"]),
    ("store writer: batches, machines, events", ["Store.write"]),
    ("store: other", ["store/db.py", "store/chunks.py"]),
    ("registration: hello, registry, lifecycle, hooks", ["AgentSession._hello", "registry.py", "lifecycle.py",
                                                        "hooks.py"]),
    ("metric ingest and rollups", ["ingest.py", "rollups.py"]),
    ("logging", ["logging/__init__.py", "SSHLogger", "_log_packet"]),
    ("SSH key exchange and authentication", ["kex", "Kex", "mlkem", "MLKEM", "x25519", "X25519", "EdDSA",
                                             "_process_userauth", "validate_public_key"]),
    ("SSH connection set-up and teardown", ["SSHConnection.__init__", "SSHServerConnection.__init__",
                                            "connection_made", "connection_lost", "Options.prepare", "_cleanup",
                                            "socket.__init__"]),
    ("SSH packets: cipher, framing, channels", ["asyncssh/"]),
    ("event loop (uvloop, native)", ["Runner.run"]),
    ("thread pool hand-offs", ["futures/thread.py"]),
]


def summarize(lines) -> tuple[Counter, int, int]:
    """(samples per cost, samples with a stack, samples without)."""
    costs: Counter = Counter()
    total = empty = 0
    for line in lines:
        stack, _, n = line.rstrip().rpartition(" ")
        if not n.isdigit():
            continue
        if not stack.strip():
            empty += int(n)
            continue
        total += int(n)
        frames = stack.split(";")
        for name, keys in COSTS:
            if any(k in f for f in frames for k in keys):
                costs[name] += int(n)
                break
        else:
            costs["other"] += int(n)
    return costs, total, empty


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("profiles", nargs="+")
    args = ap.parse_args()
    for path in args.profiles:
        with open(path) as f:
            costs, total, empty = summarize(f)
        print(f"{path}: {total} samples (+{empty} without a stack, left out)")
        for name, n in costs.most_common():
            print(f"  {100 * n / max(total, 1):5.1f} %  {name}")


if __name__ == "__main__":
    main()
