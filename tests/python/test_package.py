"""The installed package: stubs, docstrings and the names it exports."""

from __future__ import annotations

import pydoc
from pathlib import Path

import kvoffload


def test_type_stubs_are_installed_beside_the_module():
    package = Path(kvoffload.__file__).parent
    stub = (package / "_kvoffload.pyi").read_text()
    assert (package / "py.typed").exists()
    for signature in (
        "def make_manager(spec: str, num_blocks: int, block_size: int = 0, enable_events: bool = True)",
        "def lookup(self, hashes: int | Iterable[int] | Buffer) -> int | None",
        "def prepare_store(self, hashes",
        "def metrics_text(sources: dict) -> str",
        "class LogicError(ValueError)",
    ):
        assert signature in stub, signature


def test_help_reads_like_the_readme():
    text = pydoc.render_doc(kvoffload, renderer=pydoc.plaintext)
    for phrase in ("Using a manager", "prepare_store", "pending", "LogicError", "array('Q')",
                   "releases the GIL", "Prometheus"):
        assert phrase in text, phrase
    manager_help = pydoc.render_doc(kvoffload.Manager, renderer=pydoc.plaintext)
    assert "All\n" in manager_help or "All or nothing" in manager_help.replace("\n", " ")


def test_every_exported_name_exists():
    for name in kvoffload.__all__:
        assert hasattr(kvoffload, name), name
    assert kvoffload.__version__ == "0.1.0"
    assert issubclass(kvoffload.LogicError, ValueError)
    assert issubclass(kvoffload.RuntimeFailure, RuntimeError)
