"""Trace replay from Python: the C++ trace reader, the C++ reference replay, and a replay loop
written in Python that drives a manager the way a Python runtime (vLLM) would.

``replay(trace, manager)`` (this module) and ``replay_reference(trace, manager)`` (the C++ loop
of ``kvoffload-replay``) make the same calls in the same order and count hits the same way, so
on one trace, policy and capacity they report the same hits to the last block::

    from kvoffload import make_manager, replay

    trace = replay.load_trace("data/traces/mooncake/conversation_trace.jsonl")
    capacity = replay.parse_capacity("5%", trace.distinct_ids)
    ours = replay.replay(trace, make_manager("density", capacity))
    print(ours.hit_rate, replay.belady_hits(trace, capacity) / trace.references)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable, Sequence

from ._kvoffload import (
    Manager,
    ReplayResult,
    Trace,
    belady_hits,
    load_trace,
    parse_capacity,
    parse_trace,
    replay_reference,
    scramble_ids,
)

__all__ = [
    "PythonReplayResult",
    "ReplayResult",
    "Trace",
    "belady_hits",
    "load_trace",
    "parse_capacity",
    "parse_trace",
    "replay",
    "replay_reference",
    "scramble_ids",
]


@dataclass
class PythonReplayResult:
    """What :func:`replay` measured (the fields of the C++ ``ReplayResult`` it is compared with)."""

    capacity: int
    requests: int
    references: int
    hits: int  #: referenced blocks that were ready when their request came
    prefix_hits: int  #: sum over requests of lookup()'s ready prefix
    block_ops: int  #: hashes passed to manager calls, plus transfer plans confirmed
    seconds: float  #: time inside manager calls, conversions included

    @property
    def hit_rate(self) -> float:
        return self.hits / self.references if self.references else 0.0

    @property
    def prefix_hit_rate(self) -> float:
        return self.prefix_hits / self.references if self.references else 0.0


def replay(trace: Trace | Iterable[Sequence[int]], manager: Manager) -> PythonReplayResult:
    """Replay ``trace`` (a :class:`Trace` or any iterable of per-request hash lists) through
    ``manager``: per request ``lookup``, ``touch``, ``prepare_load``/``complete_load`` of the
    ready prefix, ``prepare_store``/``complete_store`` of the rest, and the manager's events
    update the set of ready blocks a KV-event consumer would know. A tiered manager's transfer
    plans are confirmed as soon as they are taken, as an engine that finishes at once would.

    The manager must have events enabled (hits are counted from them).
    """
    requests = trace.requests if isinstance(trace, Trace) else [list(r) for r in trace]
    references = sum(len(r) for r in requests)
    stats = manager.stats()
    manager.take_events()
    tiered = manager.tiered and manager.plans_transfers

    def execute_plans() -> int:
        if not tiered:
            return 0
        plans = manager.take_transfer_plans()
        for plan in plans:
            manager.complete_transfer(plan.id)
        return len(plans)

    ready: set[int] = set()
    hits = prefix_hits = block_ops = 0
    inside = 0.0
    clock = time.perf_counter
    for hashes in requests:
        hits += sum(1 for h in hashes if h in ready)
        start = clock()
        prefix = manager.lookup(hashes) or 0
        manager.touch(hashes)
        ops = 2 * len(hashes)
        if prefix > 0:
            manager.prepare_load(hashes[:prefix])
            manager.complete_load(hashes[:prefix])
            ops += 2 * prefix
        rest = hashes[prefix:]
        ops += len(rest)
        out = manager.prepare_store(rest)
        if out is not None:
            ops += execute_plans()
            to_store = out.block_hashes_to_store
            manager.complete_store(to_store, True)
            ops += len(to_store)
        ops += execute_plans()
        inside += clock() - start
        block_ops += ops
        prefix_hits += prefix
        for event in manager.take_events():
            if event.removed:
                ready.difference_update(event.block_hashes)
            else:
                ready.update(event.block_hashes)
    return PythonReplayResult(
        capacity=stats.capacity,
        requests=len(requests),
        references=references,
        hits=hits,
        prefix_hits=prefix_hits,
        block_ops=block_ops,
        seconds=inside,
    )
