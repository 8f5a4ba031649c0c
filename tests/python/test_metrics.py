"""metrics_text(): the Prometheus text format, line by line, and counters that only grow."""

from __future__ import annotations

import math
import re

import pytest

from kvoffload import LogicError, make_manager, metrics_text
from helpers import serve

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*"'
SAMPLE = re.compile(rf"^({NAME})(?:\{{({LABEL}(?:,{LABEL})*)\}})? (\S+)$")
HELP = re.compile(rf"^# HELP ({NAME}) (.+)$")
TYPE = re.compile(rf"^# TYPE ({NAME}) (counter|gauge|histogram|summary|untyped)$")

STATS_COUNTERS = ["lookups", "lookup_blocks", "hits", "misses", "stores", "stores_completed",
                  "stores_failed", "store_rejections", "stores_declined", "evictions", "loads"]
STATS_GAUGES = {"capacity": "capacity_blocks", "pending": "pending_blocks", "ready": "ready_blocks",
                "pinned": "pinned_blocks", "evictable": "evictable_blocks",
                "free_slots": "free_slots", "metadata_bytes": "metadata_bytes",
                "sketch_bytes": "sketch_bytes"}


def parse(text: str):
    """{(name, labels): value} and {name: type}; fails on any line that is not well formed."""
    assert text.endswith("\n")
    samples, types, helped = {}, {}, set()
    for number, line in enumerate(text.splitlines(), 1):
        if m := HELP.match(line):
            assert m[1] not in helped, f"line {number}: second HELP for {m[1]}"
            helped.add(m[1])
        elif m := TYPE.match(line):
            assert m[1] not in types, f"line {number}: second TYPE for {m[1]}"
            assert m[1] in helped, f"line {number}: TYPE before HELP"
            types[m[1]] = m[2]
        elif m := SAMPLE.match(line):
            name, labels, value = m[1], m[2] or "", float(m[3])
            assert name in types, f"line {number}: sample of {name} before its TYPE"
            assert name.startswith("kvoffload_"), line
            assert not math.isnan(value) and value >= 0, line
            if types[name] == "counter":
                assert name.endswith("_total"), line
            key = (name, labels)
            assert key not in samples, f"line {number}: duplicate sample {key}"
            samples[key] = value
        else:
            pytest.fail(f"line {number} is not well formed: {line!r}")
    # Each family's samples are contiguous, right after its TYPE line.
    order = [l.split("{")[0].split(" ")[0] for l in text.splitlines() if not l.startswith("#")]
    seen = []
    for name in order:
        if not seen or seen[-1] != name:
            assert name not in seen, f"samples of {name} are not contiguous"
            seen.append(name)
    return samples, types


def drive(manager, base):
    for start in range(base, base + 400, 8):
        serve(manager, list(range(start, start + 8)))


@pytest.mark.parametrize("spec", ["lru", "density", "arc+filter:threshold=2", "lru+sharded:shards=2"])
def test_every_stat_is_exported_and_counters_only_grow(spec):
    m = make_manager(spec, 64)
    drive(m, 0)
    first, types = parse(m.metrics_text("cpu"))
    stats = m.stats()
    label = 'manager="cpu"'
    for field in STATS_COUNTERS:
        assert types[f"kvoffload_{field}_total"] == "counter"
        assert first[(f"kvoffload_{field}_total", label)] == getattr(stats, field)
    for field, metric in STATS_GAUGES.items():
        assert types[f"kvoffload_{metric}"] == "gauge"
        assert first[(f"kvoffload_{metric}", label)] == getattr(stats, field)
    drive(m, 0)
    drive(m, 10_000)
    second, _ = parse(m.metrics_text("cpu"))
    assert second.keys() == first.keys()
    grew = 0
    for key, value in first.items():
        if types[key[0]] == "counter":
            assert second[key] >= value, key
            grew += second[key] > value
    assert grew >= 5  # lookups, hits, stores, evictions ... moved


def test_a_tiered_manager_adds_its_counters_and_one_gauge_per_tier():
    m = make_manager("tiered:hot=8,warm=16", 64)
    drive(m, 0)
    for plan in m.take_transfer_plans():
        m.complete_transfer(plan.id)
    samples, types = parse(m.metrics_text("kv"))
    tiered = m.tiered_stats()
    assert samples[("kvoffload_demotions_total", 'manager="kv"')] == tiered.demotions > 0
    assert types["kvoffload_transfers_in_flight"] == "gauge"
    for t, (tier, medium) in enumerate(zip(tiered.tiers, ["gpu", "cpu", "disk"])):
        labels = f'manager="kv",tier="{t}",medium="{medium}"'
        assert samples[("kvoffload_tier_capacity_blocks", labels)] == tier.capacity
        assert samples[("kvoffload_tier_ready_blocks", labels)] == tier.ready
    assert sum(v for (n, _), v in samples.items() if n == "kvoffload_tier_capacity_blocks") == 64


def test_several_managers_share_each_family_and_names_are_escaped():
    a, b = make_manager("lru", 8), make_manager("tiered:instant=1", 16)
    text = metrics_text({"host": a, 'odd "name"\\': b})
    samples, _ = parse(text)
    assert samples[("kvoffload_capacity_blocks", 'manager="host"')] == 8
    assert samples[("kvoffload_capacity_blocks", 'manager="odd \\"name\\"\\\\"')] == 16
    assert text.count("# TYPE kvoffload_capacity_blocks gauge") == 1
    with pytest.raises(LogicError, match="empty name"):
        metrics_text({"": a})
