#!/usr/bin/env python
"""Peak memory of the server receiving one client's row table, honest or oversized (issue 24).

A deployed ServerApp receives a reply as Flower's objects (the message's records, each array cut
into chunks), pulls every object from the SuperLink, inflates the message, and only then hands it
to fedsynth, which validates it (:func:`fedsynth.methods.replies.rows_from_replies`). This script
replays that path in a fresh process per case and prints the process's peak RSS:

1. a producer process builds the reply (x̂ of ``rows`` × ``width`` float64, ŝ and ŷ) and writes the
   object contents a SuperLink would hold to a scratch file;
2. a server process imports fedsynth, reads those contents (the bytes on the wire), inflates the
   message with Flower's own receive path and validates it against the schema of an honest reply
   (``--honest-rows`` × ``width``).

    .venv/bin/python scripts/bench_reply_memory.py                       # 200 rows against 5,000,000 × 10
    .venv/bin/python scripts/bench_reply_memory.py --python OTHER/.venv/bin/python   # another checkout's server

Flower's receive path is not public API (``flwr.supercore.inflatable``): it is imported here, in a
benchmark, to measure what a ServerApp pays before any fedsynth code runs.
"""

from __future__ import annotations

import argparse
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MIB = 2**20


def produce(rows: int, width: int, path: Path) -> None:
    """Write the object contents of a reply of ``rows`` × ``width`` rows to ``path``."""
    from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

    from fedsynth.methods.base import make_content

    generator = np.random.default_rng(0)
    content = make_content(arrays={
        "x": generator.normal(size=(rows, width)),
        "s": (generator.random(rows) < 0.5).astype(np.float64),
        "y": np.where(generator.random(rows) < 0.5, 1.0, -1.0),
    })
    objects = {object_id: item.deflate() for object_id, item in get_all_nested_objects(content).items()}
    with path.open("wb") as file:
        pickle.dump((content.object_id, objects), file, protocol=5)


def serve(path: Path, honest_rows: int, width: int) -> None:
    """Receive the reply in ``path`` as a ServerApp does and validate it; print the peak RSS."""
    from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents

    from fedsynth.methods import ReplySchema
    from fedsynth.methods.replies import rows_from_replies

    imported = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    with path.open("rb") as file:
        root, objects = pickle.load(file)
    wire = sum(len(content) for content in objects.values()) / MIB
    content = inflate_object_from_contents(root, objects)
    del objects
    tables, failures = rows_from_replies(
        {1: content}, ReplySchema(num_features=width, max_abs_x=1e6), min_clients=0, rows=(honest_rows, honest_rows)
    )
    verdict = "accepted" if tables else f"refused ({failures[0].reason[:120]})"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{wire:9.1f} MiB on the wire: {verdict}; peak RSS {peak:.0f} MiB "
          f"({imported:.0f} MiB after imports; {time.perf_counter() - start:.2f} s)")


def main() -> None:
    """Run the honest and the oversized case, each in fresh processes."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000, help="rows of the oversized reply")
    parser.add_argument("--honest-rows", type=int, default=200, help="rows the server asked for")
    parser.add_argument("--width", type=int, default=10, help="encoded features per row")
    parser.add_argument("--python", default=sys.executable, help="the interpreter (checkout) of the server process")
    parser.add_argument("--role", choices=("produce", "serve"), help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "produce":
        produce(args.rows, args.width, args.file)
        return
    if args.role == "serve":
        serve(args.file, args.honest_rows, args.width)
        return
    script = str(Path(__file__).resolve())
    with tempfile.TemporaryDirectory(prefix="reply-memory-") as scratch:
        for name, rows in (("honest", args.honest_rows), ("oversized", args.rows)):
            path = Path(scratch) / f"{name}.pickle"
            common = ["--width", str(args.width), "--honest-rows", str(args.honest_rows), "--file", str(path)]
            subprocess.run([sys.executable, script, "--role", "produce", "--rows", str(rows), *common], check=True)
            print(f"{name:>9} reply, {rows:,} × {args.width}: ", end="", flush=True)
            subprocess.run([args.python, script, "--role", "serve", *common], check=True)
            path.unlink()


if __name__ == "__main__":
    main()
