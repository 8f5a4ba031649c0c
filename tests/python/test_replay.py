"""A Mooncake replay driven from Python reproduces the C++ replay (kvoffload-replay)."""

from __future__ import annotations

import json
import subprocess

import pytest

from kvoffload import LogicError, make_manager, replay

# The policies at two capacities: every kind of policy, a decorator and the tiered manager
# with its transfer plans confirmed by the Python loop.
SPECS = ["lru", "arc", "weighted", "density", "lru+filter:threshold=2", "tiered:instant=1"]
CAPACITIES = ["1%", "5%"]


@pytest.mark.parametrize("capacity", CAPACITIES)
@pytest.mark.parametrize("spec", SPECS + ["tiered"])
def test_python_replay_matches_the_cpp_replay_block_for_block(mooncake_trace, spec, capacity):
    blocks = replay.parse_capacity(capacity, mooncake_trace.distinct_ids)
    ours = replay.replay(mooncake_trace, make_manager(spec, blocks, 16))
    reference = replay.replay_reference(mooncake_trace, make_manager(spec, blocks, 16))
    assert ours.requests == reference.requests == len(mooncake_trace) == 12031
    assert ours.references == reference.references == mooncake_trace.references
    assert ours.hits == reference.hits
    assert ours.prefix_hits == reference.prefix_hits
    assert ours.block_ops == reference.block_ops
    assert 0 < ours.hits < ours.references


def test_python_replay_matches_kvoffload_replay_to_the_last_digit(mooncake_trace, replay_cli, tmp_path):
    if replay_cli is None:
        pytest.skip("kvoffload-replay not built (set KVOFFLOAD_REPLAY or build build/)")
    out = tmp_path / "replay.json"
    subprocess.run(
        [str(replay_cli), "--policy", ";".join(SPECS), "--capacity", ",".join(CAPACITIES),
         "--repeat", "1", "--json", str(out)],
        check=True, capture_output=True, text=True, timeout=600,
    )
    rows = json.loads(out.read_text())
    rows = rows["results"] if isinstance(rows, dict) else rows
    assert len(rows) == len(SPECS) * len(CAPACITIES)
    for row in rows:
        manager = make_manager(row["policy"], row["capacity"], 16)
        ours = replay.replay(mooncake_trace, manager)
        # The tool writes six significant digits: the same digits, every one of them.
        assert f"{ours.hit_rate:.6g}" == f"{row['hit_rate']:.6g}", row
        assert f"{ours.prefix_hit_rate:.6g}" == f"{row['prefix_hit_rate']:.6g}", row
        belady = replay.belady_hits(mooncake_trace, row["capacity"]) / mooncake_trace.references
        assert f"{belady:.6g}" == f"{row['belady_hit_rate']:.6g}", row


def test_the_replay_accepts_plain_lists_of_requests():
    requests = [[1, 2, 3], [1, 2, 4], [1, 2, 3]]
    result = replay.replay(requests, make_manager("lru", 8))
    assert result.references == 9
    assert result.hits == 2 + 3  # 1, 2 in the second request; 1, 2, 3 in the third
    assert result.prefix_hits == 5


def test_trace_errors_name_the_line():
    with pytest.raises(LogicError, match="line 2"):
        replay.parse_trace('{"hash_ids": [1, 2]}\n{"hash_ids": [1, -2]}\n')
    with pytest.raises(LogicError, match="no_such_trace.jsonl"):
        replay.load_trace("no_such_trace.jsonl")
    trace = replay.parse_trace('{"hash_ids": [5, 6]}\n\n{"hash_ids": [5]}\n')
    assert trace.requests == [[5, 6], [5]]
    assert trace.references == 3 and trace.distinct_ids == 2
