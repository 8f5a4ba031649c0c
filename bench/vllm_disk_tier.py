#!/usr/bin/env python3
"""kvoffload's disk tier inside vLLM 0.33 (KvoffloadDiskTier, a ``secondary_tiers`` entry):
the harness the tests drive it with, and a benchmark of GB/s written and read next to vLLM's
own ``fs`` tier, on the same directory and the same workload, in the same run.

    python bench/vllm_disk_tier.py --dir DIR [--block-kib 256] [--blocks 2048]
                                   [--blocks-per-job 16] [--rounds 3] [--option KEY=VALUE]

The benchmark builds each tier as vLLM's TieringOffloadingSpec does (the tier's class with the
spec and a memoryview of CPU-tier memory), fills the CPU memory with a distinct pattern per
block, submits every block in jobs of ``--blocks-per-job`` (all in flight at once), polls
get_finished_jobs() until all are done, then reads every block back into another region and
checks each byte. GB/s counts payload bytes over wall time from the first submit to the last
completion. Both tiers use O_DIRECT where the directory's file system takes it (each says in
its log line); on a page-cached run the figures are the page cache's, not the disk's.
"""

from __future__ import annotations

import argparse
import hashlib
import mmap
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vllm_policy  # noqa: E402

TIER = {"type": "KvoffloadDiskTier", "module_path": "kvoffload.vllm"}


def pattern(key: bytes, nbytes: int) -> np.ndarray:
    """The bytes a block holds in these tests and benchmarks: distinct for every key."""
    seed = hashlib.sha256(key).digest()
    repeats = -(-nbytes // len(seed))
    return np.frombuffer((seed * repeats)[:nbytes], dtype=np.int8)


def kv_array(view: memoryview) -> np.ndarray:
    """The CPU tier's chunks as an int8 array (num_chunks, chunk bytes), sharing memory."""
    return np.asarray(view).view(np.int8)


# --- driving vLLM's TieringOffloadingManager -----------------------------------------------


class TieredHarness:
    """vLLM's TieringOffloadingManager with a CPU tier and the given secondary tiers, built from
    kv_connector_extra_config as vLLM builds it, driven as its scheduler would: a lookup that
    starts a promotion answers HIT_PENDING, and the request is looked up again once the
    scheduler's step has ended and the promotion finished. Every byte loaded is checked."""

    def __init__(self, num_chunks: int, secondary_tiers: list, engine_id: str,
                 kv_bytes_per_block: int = vllm_policy.KV_BYTES_PER_BLOCK):
        self.spec = vllm_policy.vllm_tiering_spec(num_chunks, secondary_tiers, engine_id,
                                                  kv_bytes_per_block)
        self.manager = self.spec.get_manager()
        self.kv = kv_array(self.manager.primary_tier.get_kv_memoryview())
        self.block_bytes = self.kv.shape[1]
        self.wrong_bytes = 0  # blocks loaded whose bytes were not their key's
        self.loaded = 0
        self._next_request = 0

    @property
    def tiers(self):
        return self.manager.secondary_tiers

    def context(self, keys):
        from vllm.v1.kv_offload.base import ReqContext

        self._next_request += 1
        context = ReqContext(req_id=f"h{self._next_request}")
        for position, key in enumerate(keys):
            context.set_offload_key_position(key, (position + 1) * vllm_policy.TOKENS_PER_BLOCK)
        return context

    def end_step(self) -> None:
        from vllm.v1.kv_offload.base import ScheduleEndContext

        with self.manager.lock:
            self.manager.on_schedule_end(ScheduleEndContext((), ()))

    def settle(self) -> None:
        """End steps until no transfer between the tiers is in flight."""
        for _ in range(100):
            self.end_step()
            if not self.manager.has_pending_work():
                return
            for tier in self.tiers:
                tier.drain_jobs()
        raise RuntimeError("the tiering manager still has work after 100 steps")

    def store(self, keys, context=None) -> list:
        """GPU -> CPU store of ``keys`` (each block's pattern written into its chunk), then the
        cascade to the secondary tiers, as complete_store starts it. Returns the keys stored."""
        context = context or self.context(keys)
        with self.manager.lock:
            self.manager.on_new_request(context)
            out = self.manager.prepare_store(keys, context)
            stored = []
            if out is not None and out.keys_to_store:
                for key, chunk in zip(out.keys_to_store, out.store_spec.chunk_ids):
                    self.kv[int(chunk)] = pattern(key, self.block_bytes)
                stored = list(out.keys_to_store)
                self.manager.complete_store(stored, context, True)
            self.manager.on_request_finished(context)
        return stored

    def lookup_prefix(self, keys, context) -> tuple[int, list]:
        """Leading HITs, and every key's first LookupResult."""
        from vllm.v1.kv_offload.base import LookupResult

        results = [self.manager.lookup(k, context) for k in keys]
        prefix = 0
        while prefix < len(results) and results[prefix] is LookupResult.HIT:
            prefix += 1
        return prefix, results

    def load(self, keys, context) -> None:
        """CPU -> GPU load of ``keys`` (ready in the CPU tier), checking each block's bytes."""
        spec = self.manager.prepare_load(keys, context)
        for key, chunk in zip(keys, spec.chunk_ids):
            self.loaded += 1
            if not np.array_equal(self.kv[int(chunk)], pattern(key, self.block_bytes)):
                self.wrong_bytes += 1
        self.manager.complete_load(keys, context)

    def request(self, keys) -> tuple[int, int, int]:
        """One request as the scheduler runs it: (ready in CPU, brought up from a secondary
        tier, stored). Loads and checks the ready prefix, stores the rest."""
        from vllm.v1.kv_offload.base import LookupResult

        context = self.context(keys)
        with self.manager.lock:
            self.manager.on_new_request(context)
            prefix, results = self.lookup_prefix(keys, context)
        cpu_hits = sum(r is LookupResult.HIT for r in results)
        promoted = 0
        if any(r in (LookupResult.HIT_PENDING, LookupResult.RETRY) for r in results):
            self.settle()  # the scheduler waits for the promotion, then asks again
            with self.manager.lock:
                again, second = self.lookup_prefix(keys, context)
            promoted = sum(
                a is not LookupResult.HIT and b is LookupResult.HIT for a, b in zip(results, second)
            )
            prefix = again
        with self.manager.lock:
            if prefix:
                self.load(keys[:prefix], context)
            out = self.manager.prepare_store(keys[prefix:], context)
            stored = 0
            if out is not None and out.keys_to_store:
                for key, chunk in zip(out.keys_to_store, out.store_spec.chunk_ids):
                    self.kv[int(chunk)] = pattern(key, self.block_bytes)
                stored = len(out.keys_to_store)
                self.manager.complete_store(out.keys_to_store, context, True)
            self.manager.on_request_finished(context)
        return cpu_hits, promoted, stored

    def shutdown(self) -> None:
        self.settle()
        self.kv = None  # our view of the CPU memory, which vLLM unmaps now
        self.manager.shutdown()


@dataclass
class TraceResult:
    references: int = 0
    cpu_hits: int = 0
    disk_hits: int = 0

    @property
    def hit_rate(self) -> float:
        return (self.cpu_hits + self.disk_hits) / self.references if self.references else 0.0


def drive_trace(harness: TieredHarness, requests) -> TraceResult:
    """Mooncake requests (lists of block hashes) through the harness, one at a time."""
    result = TraceResult()
    for hashes in requests:
        keys = vllm_policy.offload_keys(hashes)
        cpu_hits, promoted, _ = harness.request(keys)
        result.references += len(keys)
        result.cpu_hits += cpu_hits
        result.disk_hits += promoted
    harness.settle()
    return result


# --- the benchmark: our tier against vLLM's fs tier ----------------------------------------


def standalone_tier(tier_config: dict, root: str, num_chunks: int, block_bytes: int, engine_id: str):
    """A secondary tier built as vLLM's factory builds it, on CPU memory of our own (an
    anonymous page-aligned mapping) instead of the shared region; returns (tier, kv array)."""
    from vllm.v1.kv_offload.tiering.factory import SecondaryTierFactory

    spec = vllm_policy.vllm_tiering_spec(num_chunks, [tier_config], engine_id, block_bytes)
    region = mmap.mmap(-1, num_chunks * block_bytes)
    view = memoryview(np.frombuffer(region, dtype=np.int8).reshape(num_chunks, block_bytes))
    tier = SecondaryTierFactory.create_secondary_tier(dict(tier_config), view, spec)
    return tier, kv_array(view), region


def run_jobs(tier, keys, chunk_ids, blocks_per_job: int, is_promotion: bool, first_job: int) -> float:
    from vllm.v1.kv_offload.base import ReqContext
    from vllm.v1.kv_offload.tiering.base import TransferJob

    context = ReqContext(req_id="bench")
    pending = set()
    start = time.perf_counter()
    for job, at in enumerate(range(0, len(keys), blocks_per_job)):
        transfer = TransferJob(
            job_id=first_job + job,
            keys=keys[at : at + blocks_per_job],
            chunk_ids=np.asarray(chunk_ids[at : at + blocks_per_job], dtype=np.int64),
            is_promotion=is_promotion,
            req_context=context,
        )
        pending.add(transfer.job_id)
        (tier.submit_load if is_promotion else tier.submit_store)(transfer)
    failed = 0
    while pending:
        for result in tier.get_finished_jobs():
            pending.discard(result.job_id)
            failed += not result.success
        if pending:
            time.sleep(0.0002)
    elapsed = time.perf_counter() - start
    if failed:
        raise RuntimeError(f"{failed} jobs failed")
    return elapsed


def bench_tier(name: str, tier_config: dict, root: str, blocks: int, block_bytes: int,
               blocks_per_job: int, engine_id: str) -> tuple[float, float]:
    from vllm.v1.kv_offload.base import make_offload_key

    tier, kv, region = standalone_tier(tier_config, root, 2 * blocks, block_bytes, engine_id)
    try:
        keys = [make_offload_key(hashlib.sha256(b"%s %d" % (engine_id.encode(), i)).digest(), 0)
                for i in range(blocks)]
        for i, key in enumerate(keys):
            kv[i] = pattern(key, block_bytes)
        write_s = run_jobs(tier, keys, list(range(blocks)), blocks_per_job, False, 1)
        read_s = run_jobs(tier, keys, list(range(blocks, 2 * blocks)), blocks_per_job, True, 10**6)
        wrong = sum(not np.array_equal(kv[blocks + i], pattern(k, block_bytes)) for i, k in enumerate(keys))
        if wrong:
            raise RuntimeError(f"{name}: {wrong} of {blocks} blocks read back wrong")
    finally:
        tier.shutdown()
        del kv
    total = blocks * block_bytes / 1e9
    return total / write_s, total / read_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", required=True, help="a directory on the disk to measure")
    parser.add_argument("--block-kib", type=int, default=256)
    parser.add_argument("--blocks", type=int, default=2048)
    parser.add_argument("--blocks-per-job", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of our tier (e.g. backend=thread_pool, queue_depth=64)")
    args = parser.parse_args()
    options = {}
    for option in args.option:
        key, _, value = option.partition("=")
        options[key] = int(value) if value.isdigit() else value
    block_bytes = args.block_kib * 1024
    root = tempfile.mkdtemp(prefix="kvoffload-vllm-tier-", dir=args.dir)
    capacity = 2 * args.blocks * (block_bytes + 4096) + (64 << 20)
    tiers = {
        "kvoffload": dict(TIER, root_dir=root, capacity_bytes=capacity, persistent=False, **options),
        "vllm fs": {"type": "fs", "root_dir": root},
    }
    print(f"# {args.blocks} blocks of {args.block_kib} KiB, {args.blocks_per_job} per job, "
          f"all jobs in flight; directory {root}; our options {options or 'default'}")
    print("| round | tier | write GB/s | read GB/s |")
    print("|---|---|---|---|")
    try:
        for round_ in range(args.rounds):
            for name, config in tiers.items():
                engine = f"bench{os.getpid()}r{round_}{name.replace(' ', '')}"
                write, read = bench_tier(name, config, root, args.blocks, block_bytes,
                                         args.blocks_per_job, engine)
                print(f"| {round_} | {name} | {write:.2f} | {read:.2f} |", flush=True)
                for entry in os.listdir(root):  # the next round starts from empty files
                    shutil.rmtree(os.path.join(root, entry), ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
