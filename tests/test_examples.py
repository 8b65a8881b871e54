"""Run the example scripts in ``examples/`` at small sizes.

Each example compares a theory curve with its own simulation (ridge fits on sampled
data, SGD chains) and returns 0 only when every point passes the project's Monte Carlo
rule; the tests also check that a perturbed simulation makes them return 1, and the
ridge example's fitted bias exponent against the source/capacity prediction
``min(alpha + b - 1, 2 alpha)`` (a scaling argument independent of the evaluator).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from example_helpers import load_example, number

pytest.importorskip("matplotlib", reason="the examples draw with matplotlib (pip install matplotlib)")

RIDGE_SMALL = ["--D", "60", "--seeds", "4", "--ratios", "0.5,2", "--lams", "2", "--points", "20"]
SGD_SMALL = ["--D", "60", "--runs", "40", "--steps", "200", "--times", "12"]


@pytest.fixture(scope="module")
def ridge() -> Any:
    return load_example("ridge_learning_curves")


@pytest.fixture(scope="module")
def sgd() -> Any:
    return load_example("sgd_loss_curves")


def test_ridge_example_agrees(ridge: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ridge.main([*RIDGE_SMALL, "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert (tmp_path / "ridge_learning_curves.png").stat().st_size > 10_000
    assert "agreement: PASS" in text and "FAIL" not in text
    # 2 ridges x 2 ratios x (test, train) + 2 ridges x (bias, variance)
    assert number(r"over (\d+) points", text) == 12
    assert number(r"max \|theory - simulation\| / s\.e\. = ([\d.]+)", text) < 4.0
    fitted = number(r"bias exponent .*: fitted ([\d.]+)", text)
    assert fitted == pytest.approx(min(1.2 + 0.9 - 1, 2 * 1.2), abs=0.05)
    # ridgeless P > D: variance sigma^2 q / (1 - q); its slope over P/D in [2, 4] from the closed form
    p = np.geomspace(120, 240, 12)
    slope = -np.polyfit(np.log(p), np.log(60 / (p - 60)), 1)[0]
    assert number(r"q/\(1-q\) \(lam -> 0\) gives ([\d.]+)", text) == pytest.approx(slope, abs=1e-3)
    assert number(r"\[2, 4\] .*fitted ([\d.]+)", text) == pytest.approx(slope, abs=0.1)


def test_ridge_example_rejects_a_biased_simulation(
    ridge: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = ridge.simulate_ridge

    def biased(*args: Any, **kwargs: Any) -> dict[str, float]:
        out = real(*args, **kwargs)
        return {**out, "E_test": 1.3 * out["E_test"]}

    monkeypatch.setattr(ridge, "simulate_ridge", biased)
    small = ["--D", "60", "--seeds", "4", "--ratios", "2", "--lams", "2", "--points", "10"]
    assert ridge.main([*small, "--out", str(tmp_path)]) == 1
    text = capsys.readouterr().out
    assert "agreement: FAIL" in text and re.search(r"E_test .* FAIL", text)


def test_sgd_example_agrees(sgd: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sgd.main([*SGD_SMALL, "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert (tmp_path / "sgd_loss_curves.png").stat().st_size > 10_000
    assert "agreement: PASS" in text
    zs = [float(z) for z in re.findall(r"max \|theory - simulation\| / s\.e\. = ([\d.]+)", text)]
    assert len(zs) == 2 and max(zs) < 4.0
    # the printed learning rates are stable and satisfy the documented bounds
    k = np.arange(1, 61)
    for batch, eta in zip((1, 32), re.findall(r"eta = ([\d.]+) \(", text), strict=True):
        lam = k**-1.5
        edge = float(eta) * (1 + 1 / batch)
        ksum = float(eta) / batch * np.sum(lam / (2 - float(eta) * lam * (1 + 1 / batch)))
        assert edge <= 1 + 1e-3 and ksum <= 0.25 + 1e-3


def test_sgd_example_rejects_a_shifted_simulation(
    sgd: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = sgd.run_online_sgd

    def shifted(*args: Any, **kwargs: Any) -> Any:
        runs = real(*args, **kwargs)
        return type(runs)(runs.times, runs.losses * 1.25, runs.D)

    monkeypatch.setattr(sgd, "run_online_sgd", shifted)
    assert sgd.main([*SGD_SMALL, "--out", str(tmp_path)]) == 1
    assert "agreement: FAIL" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["ridge_learning_curves", "sgd_loss_curves"])
def test_missing_matplotlib_is_a_clear_message(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = load_example(name)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import raises ImportError
    assert module.main(["--out", str(tmp_path)]) == 2
    assert "needs matplotlib" in capsys.readouterr().err
