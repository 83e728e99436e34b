"""
Fan-out to a group of 10,000 members, every member online on its own
connection (client processes: --workers), run by hand:

    RINGPUSHD=build/<dir>/engine/ringpushd PYTHONPATH=tests/lib \
        python3 tests/integration/fanout_10k.py [--members N] [--messages M] [--shards S]

Prints the timings and exits 0 when every member got every message exactly
once and in order, 1 otherwise.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import rptest  # noqa: E402
from test_chat_fanout import run_fanout  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=10000)
    ap.add_argument("--messages", type=int, default=10)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--workers", type=int, default=4)
    a = ap.parse_args()
    print("server: %s" % rptest.server_binary(), flush=True)
    with rptest.Server(shards=a.shards, args=["--durability", "sync"]) as srv:
        rep = run_fanout(srv, a.members, a.messages, workers=a.workers, timeout=300.0,
                         log=lambda s: print(s, flush=True))
    print(json.dumps(rep, indent=1, default=str))
    return 0 if rep["bad"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
