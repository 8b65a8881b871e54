r"""The main job on a built-in example: ``detequiv demo``.

What a researcher does with detequiv, start to finish, each result with both witnesses
(exact series against planar diagram sums; seeded Monte Carlo):

1. planar combinatorics: NC(n) counted, the Kreweras complement, the planar diagrams
   of a trace word (drawn);
2. the one-point equivalent of a sample covariance's resolvent, derived by named
   rules, printed as LaTeX, checked by its 1/lam series and by Monte Carlo;
3. its two-point equivalent :math:`\lambda\lambda'G\Sigma G'` (the ridge bias), the same way;
4. the random-feature model: the one-point chain lam -> kappa_1 -> kappa_2 and the
   layered two-point equivalent, the same way;
5. the random-feature ridge test error with its fine-grained bias-variance split,
   written as a standalone numpy evaluator module (``rf_test_error.py`` in the output
   folder), imported from that file and evaluated on a double-descent curve against a
   small simulation; the plot is saved.

Progress bars (``tqdm`` when installed, a plain text bar otherwise) follow the steps of
each section. ``--quick`` uses smaller Monte Carlo sizes.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import sympy as sp

from ..plotting import figure_style, require_matplotlib

__all__ = ["run_demo"]


def _say(title: str) -> None:
    print()
    print(title)
    print("-" * len(title))


class _Bar:
    """A progress bar over the named steps of a section (tqdm if installed, else text)."""

    def __init__(self, steps: int, desc: str) -> None:
        self.steps, self.desc, self.done = steps, desc, 0
        self.times: list[tuple[str, float]] = []
        try:
            from tqdm import tqdm  # type: ignore[import-untyped]

            self.bar: Any = tqdm(total=steps, desc=desc, leave=False, file=sys.stderr, ncols=80)
        except ImportError:
            self.bar = None
            self._text("")

    def _text(self, label: str) -> None:
        filled = int(20 * self.done / self.steps)
        sys.stderr.write(
            f"\r  {self.desc} [{'#' * filled}{'.' * (20 - filled)}] {self.done}/{self.steps} {label:<28}"
        )
        sys.stderr.flush()

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        if self.bar is not None:
            self.bar.set_postfix_str(label)
        else:
            self._text(label)
        t0 = time.perf_counter()
        yield
        self.times.append((label, time.perf_counter() - t0))
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        else:
            self._text(label)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        else:
            sys.stderr.write("\r" + " " * 90 + "\r")
            sys.stderr.flush()
        _TIMES.extend(self.times)


_TIMES: list[tuple[str, float]] = []


def _indent(text: str, pad: str = "  ") -> str:
    return pad + str(text).replace("\n", "\n" + pad)


def run_demo(out: Path = Path("detequiv-demo"), quick: bool = False) -> int:
    """Run the demo, write figures and the evaluator module to ``out``; 0 when every check passed."""
    out.mkdir(parents=True, exist_ok=True)
    ok = _diagrams(out)
    ok &= _sample_covariance(quick)
    ok &= _random_features(quick)
    ok &= _learning_curve(out, quick)
    print()
    print("all checks passed" if ok else "SOME CHECKS FAILED")
    slow = sorted(_TIMES, key=lambda x: -x[1])[:4]
    print("slowest steps: " + ", ".join(f"{label} {t:.1f} s" for label, t in slow))
    print(f"output in {out}/")
    return 0 if ok else 1


def _diagrams(out: Path) -> bool:
    from ..diagrams.partitions import NCPartition, catalan, iter_label_batches
    from ..diagrams.words import Letter, TraceWord

    _say("1. Non-crossing partitions and planar diagrams")
    n = 14
    t0 = time.perf_counter()
    count = sum(len(b) for b in iter_label_batches(n))
    dt = time.perf_counter() - t0
    print(f"  NC({n}) streamed: {count} partitions in {dt:.2f} s; Catalan({n}) = {catalan(n)}")
    pi = NCPartition([[0, 3], [1, 2], [4, 5]])
    k_pi = pi.kreweras()
    print(f"  pi = {pi}, Kreweras K(pi) = {k_pi}, |pi| + |K(pi)| = {len(pi) + len(k_pi)} = n + 1")
    word = TraceWord([Letter("S"), Letter("W", free=True)] * 3)
    diagrams = list(word.planar_diagrams())
    print(f"  {word} has {len(diagrams)} planar diagrams (Catalan(3) = 5); each face is a trace of S:")
    for d in diagrams:
        print(f"    {d}")
    _draw(diagrams, out / "diagrams.png")
    print(f"  figure: {out / 'diagrams.png'}")
    return bool(count == catalan(n) and len(diagrams) == 5)


def _worst(check: Any) -> float:
    """The largest |err|/tol among the verification reports inside a Monte Carlo check."""
    found: list[float] = []

    def walk(r: Any) -> None:
        if hasattr(r, "max_ratio"):
            found.append(float(r.max_ratio))
        for attr in ("reports", "report"):
            inner = getattr(r, attr, None)
            for x in inner if isinstance(inner, (tuple, list)) else ([inner] if inner is not None else []):
                walk(x)

    walk(check)
    return max(found, default=float("nan"))


def _checks(name: str, result: Any, order: int, mc: Callable[[], Any], bar: _Bar) -> tuple[Any, Any]:
    with bar.step(f"{name}: series"):
        series = result.check_series(order)
    with bar.step(f"{name}: Monte Carlo"):
        check = mc()
    return series, check


def _report(result: Any, series: Any, check: Any) -> bool:
    """Print a result, its LaTeX, its series check and its Monte Carlo check."""
    from ..codegen.latex import to_latex

    print(_indent(str(result).split("\nderivation:")[0]))
    print(f"  derivation: {len(result.derivation)} named steps: {', '.join(result.derivation.rules)}")
    tex = to_latex(result, derivation=False)
    if len(tex) <= 2000:
        print("  LaTeX:")
        print(_indent(tex, "    "))
    else:
        print(f"  LaTeX: {len(tex)} characters (detequiv.to_latex(result) gives the align* block)")
    first = str(series).splitlines()[0]
    print(f"  exact series vs diagram sums: {'passed' if series.passed else 'FAILED'} ({first})")
    print(f"  Monte Carlo: {'passed' if check.passed else 'FAILED'} (worst |err|/tol = {_worst(check):.2f})")
    return bool(series.passed and check.passed)


def _sample_covariance(quick: bool) -> bool:
    from ..derivations.derive import derive
    from ..derivations.expressions import Deterministic, Gaussian, resolvent
    from ..derivations.sandwich import derive_two_point

    lam, lam2 = sp.symbols("lam lam2", positive=True)
    D, P = sp.symbols("D P", positive=True)
    Sigma, X = Deterministic("Sigma", D), Gaussian("X", (P, D))
    sh = Sigma.sqrt() @ X.T @ X @ Sigma.sqrt() / P
    sizes = (40, 80, 160) if quick else (50, 100, 200)
    rng = np.random.default_rng(7)
    bar = _Bar(6, "sample covariance")
    with bar.step("one-point: derive"):
        one = derive(lam * resolvent(sh, lam))
    with bar.step("two-point: derive"):
        two = derive_two_point(lam * lam2 * resolvent(sh, lam) @ Sigma @ resolvent(sh, lam2))
    c1 = _checks("one-point", one, 8, lambda: one.check_monte_carlo(sizes=sizes, rng=rng, n_samples=10), bar)
    c2 = _checks("two-point", two, 6, lambda: two.check_monte_carlo(sizes=sizes, rng=rng, n_samples=10), bar)
    bar.close()
    _say("2. One-point equivalent of a sample covariance (MATH.md 2.1)")
    ok = _report(one, *c1)
    _say("3. Two-point equivalent lam lam' G Sigma G' (the ridge bias; MATH.md 3.1)")
    return _report(two, *c2) and ok


def _random_features(quick: bool) -> bool:
    from ..derivations.derive import derive
    from ..derivations.expressions import Deterministic, Gaussian, resolvent
    from ..derivations.layered import derive_layered_two_point

    lam, lam2 = sp.symbols("lam lam2", positive=True)
    D, N, P = sp.symbols("D N P", positive=True)
    Sigma, X, F = Deterministic("Sigma", D), Gaussian("X", (P, D)), Gaussian("F", (N, D))
    sh = Sigma.sqrt() @ X.T @ X @ Sigma.sqrt() / P
    wf = F.T @ F / N
    rng = np.random.default_rng(11)
    bar = _Bar(6, "random features")
    with bar.step("one-point: derive"):
        one = derive(lam * resolvent(wf @ sh, lam), order=("X", "F"))
    with bar.step("two-point: derive"):
        two = derive_layered_two_point(
            lam * lam2 * resolvent(sh @ wf, lam) @ Sigma @ resolvent(wf @ sh, lam2), outer="W_X"
        )
    sizes = (60, 120) if quick else (80, 160, 320)
    c1 = _checks(
        "RF one-point", one, 6, lambda: one.check_monte_carlo(sizes=sizes, rng=rng, n_samples=10), bar
    )
    c2 = _checks(
        "RF two-point", two, 4, lambda: two.check_monte_carlo(sizes=sizes[:2], rng=rng, n_samples=10), bar
    )
    bar.close()
    _say("4. Random features: lam -> kappa_1 -> kappa_2 (MATH.md 2.4) and the layered two-point (3.5)")
    ok = _report(one, *c1)
    return _report(two, *c2) and ok


def _learning_curve(out: Path, quick: bool) -> bool:
    from ..codegen.pycode import loss_to_module
    from ..derivations.expressions import Deterministic, DeterministicVector, Gaussian
    from ..models.random_features import RandomFeatureRidge
    from ..models.random_features_mc import simulate_random_features

    D, N, P = sp.symbols("D N P", positive=True)
    bar = _Bar(5, "learning curve")
    with bar.step("derive the loss"):
        model = RandomFeatureRidge(
            Deterministic("Sigma", D),
            Gaussian("X", (P, D)),
            Gaussian("F", (N, D)),
            DeterministicVector("beta", D),
        )
        loss = model.test_error()
    with bar.step("write the evaluator"):
        path = out / "rf_test_error.py"
        path.write_text(loss_to_module(loss, "rf_test_error"))
        spec = importlib.util.spec_from_file_location("rf_test_error", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    d, p, lam, sigma2 = (100, 50, 1e-4, 0.25) if quick else (200, 100, 1e-4, 0.25)
    k = np.arange(1, d + 1, dtype=float)
    spectrum, beta = k**-1.0, k**-0.6
    grid = np.geomspace(0.1, 10, 200) * p
    t0 = time.perf_counter()
    curve = module.evaluate(lam, Sigma=spectrum, beta=beta, D=d, N=grid, P=p, sigma2=sigma2)
    t_eval = time.perf_counter() - t0
    ratios = (0.3, 3.0)
    seeds = 12 if quick else 20
    sims = {}
    with bar.step("simulate"):
        rng = np.random.default_rng(3)
        for r in ratios:
            n_feat = round(r * p)
            draws = [
                simulate_random_features(spectrum, beta, n_feat, p, lam, sigma2, rng) for _ in range(seeds)
            ]
            values = np.array([dr["E_test"] for dr in draws])
            sims[n_feat] = (values.mean(), values.std(ddof=1) / np.sqrt(seeds))
    with bar.step("plot"):
        _plot_curve(grid / p, curve, sims, p, out / "learning_curve.png")
    bar.close()
    _say("5. Random-feature ridge: test error, fine-grained split, evaluator, simulation (MATH.md 4.5)")
    print(f"  E_test = {' + '.join(loss.terms)}  ({len(loss.derivation)} named steps)")
    print(f"  evaluator module: {path} (numpy only; evaluate(lam, Sigma=..., beta=..., D=, N=, P=, sigma2=))")
    worst = 0.0
    for n_feat, (mean, se) in sims.items():
        theory = float(
            module.evaluate(lam, Sigma=spectrum, beta=beta, D=d, N=n_feat, P=p, sigma2=sigma2)["total"]
        )
        ratio = abs(mean - theory) / (4 * se + 5 * theory / d)
        worst = max(worst, ratio)
        print(
            f"  N/P = {n_feat / p:4.1f}: theory {theory:.4f}, simulation {mean:.4f} +- {se:.4f}"
            f"  (|err|/tol {ratio:.2f})"
        )
    near = (grid > 0.5 * p) & (grid < 2 * p)
    peak = grid[near][int(np.argmax(curve["total"][near]))] / p
    interior = curve["total"][near].max() > max(curve["total"][0], curve["total"][-1])
    print(f"  {grid.size}-point curve in {t_eval * 1e3:.1f} ms; test error peaks at N/P = {peak:.2f} (N = P)")
    print(f"  figure: {out / 'learning_curve.png'}")
    return bool(worst < 1 and interior and 0.9 < peak < 1.1)


@figure_style()
def _plot_curve(x: np.ndarray, curve: dict, sims: dict, p: int, path: Path) -> None:
    try:
        plt = require_matplotlib()
    except Exception:
        return
    fig, ax = plt.subplots(figsize=(5.8, 3.8))
    ax.plot(x, curve["total"], "-", label="test error (generated evaluator)")
    for key in ("bias", "variance_features", "variance_noise"):
        ax.plot(x, curve[key], "--", lw=1, label=key)
    ns = sorted(sims)
    ax.errorbar(
        [n / p for n in ns],
        [sims[n][0] for n in ns],
        yerr=[2 * sims[n][1] for n in ns],
        fmt="o",
        label="simulation",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("features per sample N/P")
    ax.set_ylabel("test error")
    ax.set_title("random-feature ridge: double descent", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


@figure_style()
def _draw(diagrams: list, path: Path) -> None:
    try:
        from ..diagrams.drawing import draw_diagram

        plt = require_matplotlib()
    except Exception:
        return
    fig, axes = plt.subplots(1, len(diagrams), figsize=(2.6 * len(diagrams), 3.3))
    for ax, d in zip(axes, diagrams, strict=True):
        draw_diagram(d, style="chords", ax=ax)
        ax.set_title(" ".join(str(t) for t in d.trace_factors), fontsize=8, pad=14)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
