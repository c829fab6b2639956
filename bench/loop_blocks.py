"""What blocks an event loop: the longest runs of busy samples on a process's main thread, from a py-spy
recording in speedscope format with idle samples (``py-spy record --format speedscope --idle --threads``, as
``bench_loop_lag.py --py-spy OUT`` takes it).

    .venv/bin/python bench/loop_blocks.py OUT [--rate 200] [--top 15] [--min-ms 40]

A sample is idle when the thread sits in the loop's poll (its innermost Python frame is the loop runner);
consecutive busy samples are one block (one callback or task step, or several back to back). Each block is
reported with its length (samples / rate) and the frames that most of its samples share below the runner,
then the total busy time by those frames over all blocks of at least ``--min-ms``.
"""

from __future__ import annotations

import argparse
import collections
import json
from typing import Any

IDLE_LEAVES = ("run (asyncio/runners.py", "Runner.run", "run_until_complete", "run_forever", "_run_once")


def frame_name(f: dict[str, Any]) -> str:
    file = str(f.get("file", "")).split("/site-packages/")[-1].split("/drover/")[-1]
    return f"{f.get('name')} ({file}:{f.get('line')})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("profile")
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--min-ms", type=float, default=40.0)
    ap.add_argument("--thread", default="MainThread")
    args = ap.parse_args()
    doc = json.load(open(args.profile))
    frames = [frame_name(f) for f in doc["shared"]["frames"]]
    prof = next(p for p in doc["profiles"] if args.thread in p["name"])
    ms = 1000.0 / args.rate
    blocks: list[list[list[str]]] = []
    run: list[list[str]] = []
    for sample, weight in zip(prof["samples"], prof.get("weights", [1] * len(prof["samples"])), strict=False):
        stack = [frames[i] for i in sample]
        # below the runner: the task or callback the loop is running
        cut = max((i for i, f in enumerate(stack) if f.startswith(("Runner.run", "run_until_complete"))), default=-1)
        work = stack[cut + 1:]
        busy = bool(work) and not (len(work) <= 1 and work[-1].startswith(IDLE_LEAVES))
        if busy:
            run.extend([work] * max(1, int(weight)))
        elif run:
            blocks.append(run)
            run = []
    if run:
        blocks.append(run)
    blocks.sort(key=len, reverse=True)
    total = len(prof["samples"])
    print(f"{total} samples ({total * ms / 1000:.1f} s), {sum(len(b) for b in blocks) * ms / 1000:.1f} s busy, "
          f"{len(blocks)} blocks; longest:")
    by_frame: collections.Counter[str] = collections.Counter()
    for b in blocks:
        if len(b) * ms < args.min_ms:
            continue
        counts: collections.Counter[str] = collections.Counter(f for work in b for f in set(work))
        for f, n in counts.items():
            by_frame[f] += n
    for b in blocks[: args.top]:
        counts = collections.Counter(f for work in b for f in set(work))
        longest = max(b, key=len)
        deep = [f for f in longest if counts[f] >= 0.6 * len(b)]  # shared frames, outermost first
        print(f"  {len(b) * ms:7.0f} ms  {' > '.join(deep[-4:]) if deep else '(mixed)'}")
        if not deep:  # several callbacks back to back: what they were, by their own innermost drover frames
            parts = collections.Counter(next((f for f in reversed(w) if "site-packages" not in f
                                              and "/python3." not in f and "drover" in f.lower()), w[-1]) for w in b)
            for f, n in parts.most_common(4):
                print(f"           {n * ms:6.0f} ms  {f}")
    print(f"busy time in blocks of >= {args.min_ms:g} ms, by frame:")
    for f, n in by_frame.most_common(25):
        print(f"  {n * ms:7.0f} ms  {f}")


if __name__ == "__main__":
    main()
