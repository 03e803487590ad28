"""Sample this machine's real collectors at 1 Hz for a while and save the rows, for
bench/storage.py (``--real FILE``): the real agent's values, not the simulator's.

    python -m bench.capture_real --seconds 600 --out /tmp/real.json
"""

from __future__ import annotations

import argparse
import time

import msgspec

from agent_runtime.collectors import make_collectors


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    c = make_collectors("real")
    rows = []
    next_at = time.time()
    for _ in range(args.seconds):
        now = time.time()
        values, _ = c.sample(now)
        rows.append([now, values])
        next_at += 1.0
        time.sleep(max(0.0, next_at - time.time()))
    with open(args.out, "wb") as f:
        f.write(msgspec.json.encode(rows))


if __name__ == "__main__":
    main()
