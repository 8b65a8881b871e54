"""The command line: each subcommand end to end, and clear errors for bad arguments."""

import subprocess
import sys
from math import comb

import pytest

from detequiv.cli import main


def run(capsys, *argv):
    try:
        status = main(list(argv))
    except SystemExit as exc:  # argparse errors
        status = exc.code
    out = capsys.readouterr()
    return status, out.out, out.err


def test_nc_counts_and_lists(capsys):
    status, out, _ = run(capsys, "nc", "5", "--blocks", "3")
    assert status == 0
    assert "20 partitions" in out  # Narayana N(5, 3) = 20
    assert sum(1 for line in out.splitlines() if "Kreweras" in line) == 20
    status, out, _ = run(capsys, "nc", "6", "--limit", "3")
    assert "132 partitions" in out and "129 more" in out


def test_nc_draw(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "nc.png"
    status, out, _ = run(capsys, "nc", "4", "--draw", str(path))
    assert status == 0 and path.read_bytes().startswith(b"\x89PNG")
    status, _, err = run(capsys, "nc", "4", "--draw", str(tmp_path / "nc.txt"))
    assert status == 2 and ".png" in err


def test_moments_wishart_symbolic(capsys):
    status, out, _ = run(capsys, "moments", "wishart:q", "--order", "4")
    assert status == 0
    assert "m_3 = q**2 + 3*q + 1" in out
    status, out, _ = run(capsys, "moments", "wishart:1/2", "--order", "3", "--latex")
    assert status == 0 and "\\kappa_{3}" in out and "11}{4}" in out  # m_3 = 11/4


def test_moments_semicircle_catalan(capsys):
    status, out, _ = run(capsys, "moments", "semicircle", "--order", "8")
    cats = [comb(2 * k, k) // (k + 1) for k in range(1, 5)]
    for k, c in zip((2, 4, 6, 8), cats, strict=True):
        assert f"m_{k} = {c} " in out


def test_mixed_with_check(capsys):
    status, out, _ = run(capsys, "mixed", "A W A W", "--free", "W=wishart:q", "--check")
    assert status == 0
    assert "q*tr(A)**2 + tr(A**2)" in out and "agrees" in out


def test_derive_by_the_general_engine(capsys):
    """A sum of two sample covariances (no shape rule takes it) derives by its linear pencil, and the
    series check runs on the pencil result; --method pencil forces the route, --method shapes refuses."""
    expr = "lam*resolvent(S1^(1/2) @ X1.T @ X1 @ S1^(1/2) / P1 + S2^(1/2) @ X2.T @ X2 @ S2^(1/2) / P2, lam)"
    decl = ("--det", "S1:D", "--det", "S2:D", "--gaussian", "X1:P1,D", "--gaussian", "X2:P2,D")
    status, out, _ = run(capsys, "derive", expr, *decl, "--check", "4")
    assert status == 0, out
    assert "general_engine" in out and "dyson_equation" in out and "series check passed" in out
    status, out, err = run(capsys, "derive", expr, *decl, "--method", "shapes")
    assert status == 2 and "no free additive term" in err
    status, out, _ = run(
        capsys, "derive", SAMPLE_COV, "--det", "Sigma:D", "--gaussian", "X:P,D", "--method", "pencil"
    )
    assert status == 0 and "linearize" in out and "ridge_form" in out


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (("nc", "2.5"), "not an integer"),
        (("nc", "-3"), "negative"),
        (("nc", "3", "--blocks", "5"), "exceeds N"),
        (("moments", "gamma:1", "--order", "3"), "unknown law"),
        (("moments", "wishart:-1", "--order", "3"), "ratio"),
        (("moments", "wishart:__import__('os')", "--order", "3"), "bad ratio"),
        (("moments", "semicircle", "--order", "0"), ">= 1"),
        (("mixed", "A W", "--free", "X=wishart:1"), "does not occur"),
        (("mixed", "A W", "--free", "W"), "NAME=LAW"),
        (("mixed", "A 1W", "--free", "W=wishart:1"), "not a name"),
    ],
)
def test_bad_arguments_exit_2_with_a_reason(capsys, argv, fragment):
    status, _, err = run(capsys, *argv)
    assert status == 2
    assert fragment in err


SAMPLE_COV = "lam*resolvent(Sigma^(1/2) @ X.T @ X @ Sigma^(1/2) / P, lam)"


def test_derive_sample_covariance_with_series_check(capsys):
    status, out, _ = run(
        capsys, "derive", SAMPLE_COV, "--det", "Sigma:D", "--gaussian", "X:P,D", "--check", "6"
    )
    assert status == 0, out
    assert "kappa*(kappa*I + Sigma)**(-1)" in out
    assert "gaussian_gram_to_wishart" in out and "free_factor_renormalization" in out
    assert "series check passed" in out


def test_derive_layered_latex(capsys):
    argv = ("derive", "lam*resolvent(Sigma @ B1 @ B2, lam)", "--det", "Sigma:D")
    argv += ("--free", "B1:D=wishart:q1", "--free", "B2:D=poisson:2:3", "--latex")
    status, out, _ = run(capsys, *argv)
    assert status == 0
    assert out.startswith("\\begin{align*}") and "\\kappa_{2}" in out


def test_derive_trace_and_quadratic_form(capsys):
    r = "lam*resolvent(Sigma^(1/2) @ X.T @ X @ Sigma^(1/2) / P, lam)"
    decl = ("--det", "Sigma:D", "--det", "T:D", "--vec", "u:D", "--gaussian", "X:P,D")
    status, out, _ = run(capsys, "derive", f"tr(T @ {r})", *decl, "--check", "4")
    assert status == 0 and "contract_equivalence" in out and "series check passed" in out
    status, out, _ = run(capsys, "derive", f"u' @ {r} @ u", *decl)
    assert status == 0 and "kappa" in out


def test_derive_two_point(capsys):
    r = "resolvent(Sigma^(1/2) @ X.T @ X @ Sigma^(1/2) / P, {})"
    expr = "lam*lam2*" + r.format("lam") + " @ M @ " + r.format("lam2")
    argv = ("derive", expr, "--det", "Sigma:D", "--det", "M:D", "--gaussian", "X:P,D", "--check", "3")
    status, out, _ = run(capsys, *argv)
    assert status == 0, out
    assert "operator_valued_subordination" in out and "two-point series check passed" in out


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (("derive", "lam*resolvent(Sigma X, lam)", "--det", "Sigma:D", "--gaussian", "X:P,D"), "column 21"),
        (("derive", "lam*resolvent(Sigma, lam)"), "no matrices declared"),
        (("derive", "lam*resolvent(Sigma, lam)", "--det", "Sigma"), "NAME:..."),
        (("derive", "lam*resolvent(Sigma, lam)", "--det", "Sigma:-3"), "positive integer or a name"),
        (("derive", "x", "--gaussian", "X:P"), "two dimensions"),
        (("derive", "x", "--free", "B:D"), "NAME:DIM=LAW"),
        (("derive", "x", "--det", "A:D", "--det", "A:D"), "declared twice"),
        (
            (
                "derive",
                "lam*resolvent(S @ G, lam)",
                "--det",
                "S:D",
                "--free",
                "G:D=semicircle",
                "--method",
                "shapes",
            ),
            "S-transform",
        ),
    ],
)
def test_derive_bad_arguments(capsys, argv, fragment):
    status, _, err = run(capsys, *argv)
    assert status == 2 and fragment in err, err


def test_demo_runs_and_passes(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "detequiv", "demo", "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all checks passed" in proc.stdout
    for section in (
        "1. Non-crossing",
        "2. One-point",
        "3. Two-point",
        "4. Random features",
        "5. Random-feature",
    ):
        assert section in proc.stdout, section
    assert proc.stdout.count("exact series vs diagram sums: passed") == 4
    assert proc.stdout.count("Monte Carlo: passed") == 4
    assert "\\begin{align*}" in proc.stdout  # LaTeX printed
    for name in ("diagrams.png", "learning_curve.png", "rf_test_error.py"):
        assert (tmp_path / name).exists(), name
    # the evaluator it wrote runs without sympy in a fresh interpreter
    code = (
        "import sys, importlib.util, numpy as np; sys.modules['sympy'] = None; "
        f"spec = importlib.util.spec_from_file_location('m', r'{tmp_path / 'rf_test_error.py'}'); "
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
        "k = np.arange(1, 101.0); "
        "print(float(m.evaluate(1e-3, Sigma=k**-1.0, beta=k**-0.6, D=100, N=25, P=50, sigma2=0.25)['total']))"
    )
    value = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout)
    assert 0.25 < value < 10


def test_codegen_writes_an_importable_evaluator(capsys, tmp_path):
    out = tmp_path / "mp_ridge.py"
    code, text, _ = run(
        capsys,
        "codegen",
        "lam*resolvent(Sigma^(1/2) @ X.T @ X @ Sigma^(1/2) / P, lam)",
        "--det",
        "Sigma:D",
        "--gaussian",
        "X:P,D",
        "-o",
        str(out),
    )
    assert code == 0 and "wrote" in text
    assert "import sympy" not in out.read_text()
    # run it in a fresh interpreter; MATH.md 7: isotropic kappa(q=0.5, lam=0.1) = 0.1741657387
    script = (
        "import numpy as np, sys; sys.path.insert(0, sys.argv[1]); import mp_ridge; "
        "print(repr(float(mp_ridge.evaluate(0.1, Sigma=np.ones(300), D=300, P=600)['kappa'])))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert abs(float(done.stdout) - 0.1741657387) < 1e-9


def test_codegen_of_a_two_point_expression_goes_through_the_general_engine(capsys, tmp_path):
    """No shape module exists for two-point results; codegen generates the pencil's evaluator. With an
    isotropic Sigma, lam lam2 tr(R1 R2) = lam lam2 (m(lam) - m(lam2)) / (lam2 - lam) (the resolvent
    identity), m(z) = k / (z (1 + k)) with k^2 + (1 - q - z) k - z = 0 (Marchenko-Pastur, q = D/P)."""
    out = tmp_path / "two_point.py"
    expr = "lam*lam2*resolvent(Sigma @ X.T @ X / P, lam) @ Sigma @ resolvent(Sigma @ X.T @ X / P, lam2)"
    code, text, _ = run(capsys, "codegen", expr, "--det", "Sigma:D", "--gaussian", "X:P,D", "-o", str(out))
    assert code == 0 and "wrote" in text
    script = (
        "import numpy as np, sys; sys.path.insert(0, sys.argv[1]); import two_point; "
        "print(repr(float(two_point.evaluate(0.3, lam2=0.8, Sigma=np.ones(200), P=400)['value'])))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True
    )

    def m(z, q=0.5):
        k = (z + q - 1 + ((1 - q - z) ** 2 + 4 * z) ** 0.5) / 2
        return k / (z * (1 + k))

    want = 0.3 * 0.8 * (m(0.3) - m(0.8)) / (0.8 - 0.3)
    assert abs(float(done.stdout) - want) < 1e-12
    code, _, err = run(
        capsys, "codegen", expr, "--det", "Sigma:D", "--gaussian", "X:P,D", "--method", "shapes"
    )
    assert code == 2 and "general-engine" in err


def test_derive_sandwich_and_layered_latex(capsys):
    code, text, _ = run(
        capsys,
        "derive",
        "lam*lam2*resolvent(Sigma @ X.T @ X / P, lam) @ Sigma @ X.T @ X / P"
        " @ resolvent(Sigma @ X.T @ X / P, lam2)",
        "--det",
        "Sigma:D",
        "--gaussian",
        "X:P,D",
        "--check",
        "3",
    )
    assert code == 0 and "resolvent_absorption" in text and "series check passed" in text
    code, text, _ = run(
        capsys,
        "derive",
        "lam*lam2*resolvent(Sigma @ X.T @ X @ F.T @ F / (P*N), lam) @ M"
        " @ resolvent(F.T @ F @ Sigma @ X.T @ X / (N*P), lam2)",
        "--det",
        "Sigma:D",
        "--det",
        "M:D",
        "--gaussian",
        "X:P,D",
        "--gaussian",
        "F:N,D",
        "--latex",
    )
    assert code == 0 and text.startswith("\\begin{align*}")


def test_curve_ridge_matches_math_md_table(capsys):
    # MATH.md 7, isotropic ridge q = 2, lam = 0.1, s = 1, sigma2 = 0.25:
    # E_g = 0.9365286644, E_tr = 0.0066757967
    code, text, _ = run(
        capsys,
        "curve",
        "ridge",
        "--spectrum",
        "flat",
        "--target",
        "flat",
        "--D",
        "400",
        "--P",
        "200",
        "--noise",
        "0.25",
        "--lam",
        "0.01:0.1:2",
    )
    assert code == 0
    row = text.strip().splitlines()[-1].split()
    assert abs(float(row[5]) - 0.9365286644) < 1e-5 and abs(float(row[6]) - 0.0066757967) < 1e-6
    code, _, err = run(capsys, "curve", "ridge", "--spectrum", "bad", "--D", "10")
    assert code == 2 and "powerlaw" in err


def test_curve_sgd_floor_matches_math_md(capsys):
    # MATH.md 7: lambda_k = k^-1.5 (k <= 300), sigma = 0.2, eta = 0.2, B = 1: L_inf = 0.055477
    code, text, _ = run(
        capsys,
        "curve",
        "sgd",
        "--spectrum",
        "powerlaw:1.5",
        "--D",
        "300",
        "--noise",
        "0.04",
        "--steps",
        "100",
    )
    assert code == 0
    floor = float(text.splitlines()[1].split(":")[1])
    assert abs(floor - 0.055477) < 1e-6
    code, _, err = run(
        capsys, "curve", "sgd", "--spectrum", "flat", "--D", "10", "--eta", "5", "--steps", "5"
    )
    assert code == 2 and "unstable" in err


def test_dmft_subcommand_runs(capsys):
    """`detequiv dmft` reaches dmft_main: the exact linear route; at t = 0 the test loss is the
    teacher norm rho = |theta*|^2/d = 1 (zero start)."""
    code, text, _ = run(
        capsys, "dmft", "linear", "--delta", "2", "--steps", "10", "--dt", "0.1", "--simulate", "0"
    )
    assert code == 0
    lines = [line.split() for line in text.splitlines() if line and not line.startswith("#")]
    header, first = lines[0], lines[1]
    assert float(first[header.index("t")]) == 0.0
    assert abs(float(first[header.index("test_dmft")]) - 1.0) < 1e-12
    assert len(lines) == 12  # header + 11 grid times
    code, _, err = run(capsys, "dmft", "linear", "--delta", "-1")
    assert code == 2 and "delta" in err
