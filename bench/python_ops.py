#!/usr/bin/env python3
"""Block operations per second of kvoffload managers called from Python.

A block operation is one hash passed to one manager call, as in kvoffload-replay. Three ways
of driving the same manager, same policy, same trace, in one run:
  * batched: the trace's references in batches of --batch hashes, per batch touch,
    prepare_store + complete_store of what it names, lookup; hashes as array('Q') (read in
    place) and as lists of ints;
  * per request: the Mooncake replay loop of kvoffload.replay.replay (about 24 hashes a call);
  * the ceiling: the same replay loop in C++ (replay_reference), no Python in between;
and a pure-Python OrderedDict LRU with the same per-batch calls (our own few lines, in the
style of vLLM's Python managers) as the peer.

    python bench/python_ops.py [--trace FILE] [--capacity 5%] [--batch 4096] [--repeat 5]
"""

from __future__ import annotations

import argparse
import array
import json
import platform
import statistics
import time
from collections import OrderedDict
from pathlib import Path

import kvoffload
from kvoffload import make_manager, replay

TRACE = Path(__file__).resolve().parents[1] / "data/traces/mooncake/conversation_trace.jsonl"


class PythonLru:
    """A minimal LRU of the same contract in pure Python (OrderedDict), for comparison."""

    def __init__(self, capacity: int):
        self.capacity, self.blocks, self.free = capacity, OrderedDict(), list(range(capacity))

    def lookup(self, hashes):
        n = 0
        for h in hashes:
            if self.blocks.get(h, -1) < 0:  # absent, or pending (slot stored negated - 1)
                break
            n += 1
        return n

    def touch(self, hashes):
        for h in reversed(hashes):
            if h in self.blocks:
                self.blocks.move_to_end(h)

    def prepare_store(self, hashes):
        new = [h for h in dict.fromkeys(hashes) if h not in self.blocks]
        need = len(new) - len(self.free)
        evicted = []
        if need > 0:
            named = set(hashes)
            for h, slot in self.blocks.items():
                if len(evicted) == need:
                    break
                if slot >= 0 and h not in named:
                    evicted.append(h)
            if len(evicted) < need:
                return None
            for h in evicted:
                self.free.append(self.blocks.pop(h))
        slots = [self.free.pop() for _ in new]
        for h, s in zip(new, slots):
            self.blocks[h] = -s - 1
        return new, slots, evicted

    def complete_store(self, hashes):
        for h in hashes:
            slot = self.blocks[h]
            if slot < 0:
                self.blocks[h] = -slot - 1


def batched(manager, batches) -> tuple[int, float]:
    ops = 0
    start = time.perf_counter()
    for batch in batches:
        manager.touch(batch)
        out = manager.prepare_store(batch)
        stored = 0
        if out is not None:
            stored_hashes = out.block_hashes_to_store if hasattr(out, "block_hashes_to_store") else out[0]
            manager.complete_store(stored_hashes)
            stored = len(stored_hashes)
        manager.lookup(batch)
        ops += 3 * len(batch) + stored
    return ops, time.perf_counter() - start


def median_rate(run, repeat: int) -> float:
    rates = []
    for _ in range(repeat):
        ops, seconds = run()
        rates.append(ops / seconds)
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trace", default=str(TRACE))
    parser.add_argument("--capacity", default="5%")
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--policy", default="lru,arc,density")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args()

    trace = replay.load_trace(args.trace)
    capacity = replay.parse_capacity(args.capacity, trace.distinct_ids)
    stream = [h for request in trace.requests for h in request]
    lists = [stream[i:i + args.batch] for i in range(0, len(stream), args.batch)]
    buffers = [array.array("Q", b) for b in lists]
    print(f"kvoffload {kvoffload.__version__}, Python {platform.python_version()}, "
          f"{platform.machine()}; trace {Path(args.trace).name}: {len(trace)} requests, "
          f"{trace.references} references; capacity {capacity} blocks ({args.capacity}); "
          f"median of {args.repeat}")
    print(f"{'policy':10} {'batched array(Q)':>17} {'batched list':>13} {'per request':>12} "
          f"{'C++ replay':>11}   (M block ops/s; batch = {args.batch} hashes)")
    results = []
    for spec in args.policy.split(","):
        fresh = lambda: make_manager(spec, capacity, 16)
        row = {
            "policy": spec,
            "batched_buffer": median_rate(lambda: batched(fresh(), buffers), args.repeat),
            "batched_list": median_rate(lambda: batched(fresh(), lists), args.repeat),
        }

        def per_request():
            r = replay.replay(trace, fresh())
            return r.block_ops, r.seconds

        def native():
            r = replay.replay_reference(trace, fresh())
            return r.block_ops, r.manager_seconds

        row["per_request"] = median_rate(per_request, args.repeat)
        row["cpp_replay"] = median_rate(native, args.repeat)
        results.append(row)
        print(f"{spec:10} {row['batched_buffer'] / 1e6:17.1f} {row['batched_list'] / 1e6:13.1f} "
              f"{row['per_request'] / 1e6:12.2f} {row['cpp_replay'] / 1e6:11.1f}")
    peer = median_rate(lambda: batched(PythonLru(capacity), lists), args.repeat)
    print(f"{'python-lru':10} {'':17} {peer / 1e6:13.2f}   (pure-Python OrderedDict LRU, same batches)")
    if args.json:
        Path(args.json).write_text(json.dumps({"capacity": capacity, "batch": args.batch,
                                               "results": results, "python_lru": peer}, indent=1))


if __name__ == "__main__":
    main()
