"""Run ``examples/rf_double_descent.py`` at a small size.

The example compares the derived random-feature test error (and its fine-grained split)
with replica simulations and returns 0 only when every simulated term passes the project's
Monte Carlo rule. Checked: it agrees and draws its figure; the theory curve peaks at the
interpolation threshold ``N = P`` (a fact independent of the formula); a biased simulation
makes it return 1; without matplotlib it still prints the table.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
from example_helpers import load_example, number

SMALL = ["--D", "100", "--P", "40", "--seeds", "6", "--ratios", "0.4,3"]


@pytest.fixture(scope="module")
def example() -> Any:
    return load_example("rf_double_descent")  # derive_loss() is cached: one derivation per file


def test_rf_example_agrees(example: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib", reason="the figure needs matplotlib")
    grid = ["--points", "11", "--low", "0.3", "--high", "3"]
    assert example.main([*SMALL, *grid, "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert (tmp_path / "rf_double_descent.png").stat().st_size > 10_000
    assert "agreement: PASS" in text and "FAIL" not in text
    # 2 points x (6 terms + total)
    assert number(r"over (\d+) terms", text) == 14
    assert number(r"max \|theory - simulation\| / s\.e\. = ([\d.]+)", text) < 4.0
    # double descent: the test error peaks at the interpolation threshold N = P
    assert 0.6 < number(r"peak of the test error on the grid: N/P = ([\d.]+)", text) < 1.7


def test_rf_example_rejects_a_biased_simulation(
    example: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = example.simulate_random_features

    def biased(*args: Any, **kwargs: Any) -> dict[str, float]:
        out = real(*args, **kwargs)
        return {**out, "variance_noise": 1.3 * out["variance_noise"]}

    monkeypatch.setattr(example, "simulate_random_features", biased)
    small = [*SMALL[:-1], "3", "--points", "3"]
    assert example.main([*small, "--out", str(tmp_path)]) == 1
    text = capsys.readouterr().out
    assert "agreement: FAIL" in text and re.search(r"variance_noise .* FAIL", text)
    assert not re.search(r"(bias|variance_features|variance_data) .* FAIL", text)


def test_rf_example_without_matplotlib(
    example: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import raises ImportError
    small = [*SMALL[:-1], "3", "--points", "3"]
    assert example.main([*small, "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "table only" in text and "agreement: PASS" in text
    assert not (tmp_path / "rf_double_descent.png").exists()
