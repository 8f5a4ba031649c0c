#!/usr/bin/env python3
"""Mooncake trace through vLLM 0.33's scheduler-side CPU offloading manager, built from an
OffloadingConfig exactly as vLLM builds it (CPUOffloadingSpec.get_manager), with vLLM's own
policy or a kvoffload one loaded by module path; prints hit rates and scheduler time per
request beside kvoffload-replay's reference replay on the same requests.

    python bench/vllm_policy.py [--trace PATH] [--requests N] [--capacity 1%,5%]
                                [--policy lru,kvoffload_density,...] [--repeat R]

Needs vLLM 0.33 and the kvoffload package in the same interpreter. Per request, as the
Python replay of kvoffload.replay does: lookup of every block (a hit is a block ready when the
request came), prepare_load/complete_load of the ready prefix, prepare_store/complete_store of
the rest, on_request_finished.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TRACE = REPO / "data" / "traces" / "mooncake" / "conversation_trace.jsonl"
TOKENS_PER_BLOCK = 16  # the engine's block size; only the key positions depend on it
KV_BYTES_PER_BLOCK = 4096  # one worker's KV bytes per block; the chunk count is what matters


def offloading_config(extra: dict, engine_id: str = "kvoffload-bench",
                      kv_bytes_per_block: int = KV_BYTES_PER_BLOCK):
    """The OffloadingConfig vLLM's connector builds, with ``extra`` as kv_connector_extra_config
    (one worker, one KV group, one block per chunk)."""
    from vllm.v1.kv_offload.config import (
        OffloadingCacheConfig,
        OffloadingConfig,
        OffloadingGroupConfig,
        OffloadingModelConfig,
        OffloadingParallelConfig,
    )

    return OffloadingConfig(
        groups=(OffloadingGroupConfig(TOKENS_PER_BLOCK, ("layer.0",), 0),),
        worker_kv_bytes_per_block=kv_bytes_per_block,
        enable_kv_cache_events=False,
        extra_config=extra,
        engine_id=engine_id,
        model=OffloadingModelConfig(name="mooncake-trace", dtype="float16"),
        cache=OffloadingCacheConfig(tokens_per_hash=TOKENS_PER_BLOCK, blocks_per_chunk=1),
        parallel=OffloadingParallelConfig(
            rank=0, world_size=1, tp_size=1, pp_size=1, pcp_size=1, dcp_size=1,
            data_parallel_index=0, data_parallel_size=1, data_parallel_rank_local=None,
            is_parallelism_agnostic=True,
        ),
    )


def vllm_manager(num_chunks: int, policy: str, module_path: str | None = None):
    """vLLM's CPUOffloadingManager as CPUOffloadingSpec builds it from kv_connector_extra_config
    ``{"cpu_bytes_to_use": ..., "eviction_policy": policy, "cache_policy_module_path": ...}``."""
    from vllm.v1.kv_offload.cpu.spec import CPUOffloadingSpec

    extra = {"cpu_bytes_to_use": num_chunks * KV_BYTES_PER_BLOCK, "eviction_policy": policy}
    if module_path is not None:
        extra["cache_policy_module_path"] = module_path
    spec = CPUOffloadingSpec(offloading_config(extra))
    if spec.num_chunks != num_chunks:
        raise RuntimeError(f"the spec made {spec.num_chunks} chunks, not {num_chunks}")
    return spec.get_manager()


def vllm_tiering_spec(num_chunks: int, secondary_tiers: list, engine_id: str,
                      kv_bytes_per_block: int = KV_BYTES_PER_BLOCK, policy: str = "lru"):
    """vLLM's TieringOffloadingSpec from kv_connector_extra_config ``{"cpu_bytes_to_use": ...,
    "secondary_tiers": secondary_tiers}``; ``spec.get_manager()`` builds the
    TieringOffloadingManager (its CPU tier in /dev/shm/vllm_offload_<engine_id>.mmap), and
    ``shutdown()`` on it releases that."""
    from vllm.v1.kv_offload.tiering.spec import TieringOffloadingSpec

    extra = {
        "cpu_bytes_to_use": num_chunks * kv_bytes_per_block,
        "eviction_policy": policy,
        "secondary_tiers": [dict(t) for t in secondary_tiers],
    }
    spec = TieringOffloadingSpec(offloading_config(extra, engine_id, kv_bytes_per_block))
    if spec.num_chunks != num_chunks:
        raise RuntimeError(f"the spec made {spec.num_chunks} chunks, not {num_chunks}")
    return spec


def offload_keys(hashes):
    from vllm.v1.kv_offload.base import make_offload_key

    return [make_offload_key(h.to_bytes(8, "big"), 0) for h in hashes]


@dataclass
class HarnessResult:
    requests: int
    references: int
    hits: int
    seconds: float  # inside the manager's calls

    @property
    def hit_rate(self) -> float:
        return self.hits / self.references if self.references else 0.0

    @property
    def us_per_request(self) -> float:
        return 1e6 * self.seconds / self.requests if self.requests else 0.0


def drive(manager, requests) -> HarnessResult:
    """Replay ``requests`` (lists of block hashes) through a vLLM OffloadingManager."""
    from vllm.v1.kv_offload.base import LookupResult, ReqContext

    hits = references = 0
    inside = 0.0
    clock = time.perf_counter
    key_lists = [offload_keys(r) for r in requests]
    for index, keys in enumerate(key_lists):
        context = ReqContext(req_id=f"r{index}")
        for position, key in enumerate(keys):
            context.set_offload_key_position(key, (position + 1) * TOKENS_PER_BLOCK)
        references += len(keys)
        start = clock()
        manager.on_new_request(context)
        prefix = 0
        in_prefix = True
        for key in keys:
            ready = manager.lookup(key, context) is LookupResult.HIT
            hits += ready
            if in_prefix and ready:
                prefix += 1
            else:
                in_prefix = False
        if prefix:
            manager.prepare_load(keys[:prefix], context)
            manager.complete_load(keys[:prefix], context)
        out = manager.prepare_store(keys[prefix:], context)
        if out is not None and out.keys_to_store:
            manager.complete_store(out.keys_to_store, context, True)
        manager.on_request_finished(context)
        inside += clock() - start
    return HarnessResult(len(key_lists), references, hits, inside)


def load_requests(trace_path: Path, limit: int | None):
    from kvoffload import replay

    trace = replay.load_trace(str(trace_path))
    requests = [list(r) for r in trace.requests]
    return requests[:limit] if limit else requests


def reference_hit_rate(requests, spec: str, capacity: int) -> float:
    """kvoffload-replay's loop (kvoffload.replay.replay, equal to it block for block)."""
    from kvoffload import make_manager, replay

    return replay.replay(requests, make_manager(spec, capacity, 16)).hit_rate


def distinct_blocks(requests) -> int:
    return len({h for r in requests for h in r})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    parser.add_argument("--requests", type=int, default=0, help="first N requests (0: all)")
    parser.add_argument("--capacity", default="1%,5%")
    parser.add_argument("--policy", default="lru,kvoffload_lru,kvoffload_density,kvoffload_arc")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds over the policies, interleaved; us/request is the median "
                             "(and the range) of the rounds")
    args = parser.parse_args()
    from kvoffload import replay

    if any(p.startswith("kvoffload_") for p in args.policy.split(",")):
        import kvoffload.vllm as kvllm
    requests = load_requests(args.trace, args.requests or None)
    distinct = distinct_blocks(requests)
    print(f"# {len(requests)} requests, {sum(map(len, requests))} references, {distinct} distinct; "
          f"{args.repeat} interleaved round(s)")
    print("| capacity | policy | hit rate (vLLM manager) | kvoffload-replay | us/request (median, range) |")
    print("|---|---|---|---|---|")
    for capacity_text in args.capacity.split(","):
        capacity = replay.parse_capacity(capacity_text, distinct)
        policies = args.policy.split(",")
        times = {p: [] for p in policies}
        rates = {}
        for _ in range(args.repeat):
            for policy in policies:
                ours = policy.startswith("kvoffload_")
                manager = vllm_manager(capacity, policy, "kvoffload.vllm" if ours else None)
                result = drive(manager, requests)
                times[policy].append(result.us_per_request)
                if rates.setdefault(policy, result.hit_rate) != result.hit_rate:
                    raise RuntimeError(f"{policy}: the hit rate changed between rounds")
        for policy in policies:
            ours = policy.startswith("kvoffload_")
            ref_spec = getattr(kvllm, policy).spec if ours else policy
            ref = reference_hit_rate(requests, ref_spec, capacity)
            t = sorted(times[policy])
            print(f"| {capacity_text} ({capacity}) | {policy} | {rates[policy]:.4f} | "
                  f"{ref_spec} {ref:.4f} | {t[len(t) // 2]:.1f} ({t[0]:.1f}-{t[-1]:.1f}) |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
