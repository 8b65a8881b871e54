"""Every snippet of the README runs: the python blocks in order (one namespace, as a reader
would paste them) and every ``detequiv ...`` command line (through the CLI's ``main``, in
a temporary folder), except ``demo`` which tests/test_cli.py runs."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def command_lines() -> list[str]:
    text = README.read_text().replace("\\\n", " ")
    lines = [m.group(1).strip() for m in re.finditer(r"^ {4}(detequiv .*)$", text, re.M)]
    return [re.sub(r"\s+#.*$", "", line) for line in lines if " demo" not in line]


def test_readme_has_snippets():
    assert len(python_blocks()) >= 3
    assert len(command_lines()) >= 6


def test_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for i, block in enumerate(python_blocks()):
        exec(compile(block, f"README block {i}", "exec"), namespace)  # noqa: S102


@pytest.mark.parametrize("line", command_lines())
def test_command_lines_run(line, tmp_path, monkeypatch, capsys):
    from detequiv.cli import main

    monkeypatch.chdir(tmp_path)
    argv = shlex.split(line)[1:]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.strip(), line
    for flag in ("-o", "--plot", "--draw"):
        if flag in argv:
            assert (tmp_path / argv[argv.index(flag) + 1]).exists(), line
