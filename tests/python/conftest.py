"""Shared fixtures of the Python binding tests (run by scripts/test.sh in its venv)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TRACE = REPO / "data" / "traces" / "mooncake" / "conversation_trace.jsonl"


@pytest.fixture(scope="session")
def mooncake_trace():
    from kvoffload import replay

    return replay.load_trace(str(TRACE))


@pytest.fixture(scope="session")
def replay_cli() -> Path | None:
    """The kvoffload-replay binary: $KVOFFLOAD_REPLAY, else the release build's."""
    for candidate in (os.environ.get("KVOFFLOAD_REPLAY"), REPO / "build" / "bench" / "kvoffload-replay"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None
