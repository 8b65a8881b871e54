"""Helpers shared by the tests that run the scripts in ``examples/`` (imported by name: pytest
puts ``tests/`` on ``sys.path``)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str) -> Any:
    """Import ``examples/<name>.py`` as a module (its ``main(argv)`` is then called in-process)."""
    spec = importlib.util.spec_from_file_location(f"_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def number(pattern: str, text: str) -> float:
    """The first group of ``pattern`` in an example's printed output, as a float."""
    match = re.search(pattern, text)
    assert match is not None, f"{pattern!r} not in the output:\n{text}"
    return float(match.group(1))
