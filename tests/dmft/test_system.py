"""The DMFT system spec: sympy derivatives against hand derivatives, linearity detection,
noise multiplier moments against their definitions, and input validation."""

import math

import numpy as np
import pytest
import sympy as sp

from detequiv.dmft.system import (
    GD,
    SGF,
    BernoulliVisits,
    CustomLoss,
    DMFTSystem,
    GaussianInit,
    Grid,
    HeavyBall,
    LinearTeacher,
    Logistic,
    LogisticTeacher,
    Ridge,
    SampleSide,
    SignTeacher,
    Square,
    ZeroInit,
)
from detequiv.errors import InvalidArgument

R_GRID = np.linspace(-6.0, 6.0, 41)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_square_numbers_match_hand_derivatives():
    loss = Square()
    y = 0.7
    assert np.allclose(loss.value(R_GRID, y), (R_GRID - y) ** 2 / 2, rtol=0, atol=1e-14)
    assert np.allclose(loss.derivative(R_GRID, y), R_GRID - y, rtol=0, atol=1e-14)
    assert np.allclose(loss.second_derivative(R_GRID, y), 1.0, rtol=0, atol=1e-14)
    assert loss.second_derivative(R_GRID, y).shape == R_GRID.shape


@pytest.mark.parametrize("y", [1.0, -1.0])
def test_logistic_stable_forms_match_textbook_and_sympy(y):
    loss = Logistic()
    # textbook: l = log(1 + e^{-yr}), l' = -y sigma(-yr), l'' = sigma(yr) sigma(-yr)
    assert np.allclose(loss.value(R_GRID, y), np.log1p(np.exp(-y * R_GRID)), rtol=1e-13, atol=0)
    assert np.allclose(loss.derivative(R_GRID, y), -y * _sigmoid(-y * R_GRID), rtol=1e-12, atol=1e-15)
    assert np.allclose(
        loss.second_derivative(R_GRID, y),
        _sigmoid(y * R_GRID) * _sigmoid(-y * R_GRID),
        rtol=1e-11,
        atol=1e-15,
    )
    # the symbolic first / second derivative is the same function
    f1 = sp.lambdify((loss.r, loss.y), loss.first)
    f2 = sp.lambdify((loss.r, loss.y), loss.second)
    assert np.allclose(f1(R_GRID, y), loss.derivative(R_GRID, y), rtol=1e-12, atol=1e-15)
    assert np.allclose(f2(R_GRID, y), loss.second_derivative(R_GRID, y), rtol=1e-11, atol=1e-15)
    assert np.all(np.isfinite(loss.value(np.array([-800.0, 800.0]), y)))


def test_custom_loss_derivatives_against_finite_differences():
    r, y = sp.symbols("r y")
    loss = CustomLoss(sp.log(sp.cosh(r - y)), r, y)  # l' = tanh(r - y), l'' = sech^2
    yv = -0.3
    assert np.allclose(loss.derivative(R_GRID, yv), np.tanh(R_GRID - yv), rtol=1e-12, atol=1e-14)
    h = 1e-5
    fd = (loss.derivative(R_GRID + h, yv) - loss.derivative(R_GRID - h, yv)) / (2 * h)
    assert np.allclose(loss.second_derivative(R_GRID, yv), fd, rtol=0, atol=1e-8)
    assert not loss.is_gaussian_linear
    assert loss.square_scale is None


def test_linearity_detection():
    r, y = sp.symbols("r y")
    assert Square().is_gaussian_linear
    assert not Logistic().is_gaussian_linear
    assert CustomLoss(2 * (r - y) ** 2, r, y).square_scale == 4.0
    # affine l' but not a square around y (l' = r + y): Gaussian-linear, not a square loss
    odd = CustomLoss(r**2 / 2 + r * y, r, y)
    assert odd.is_gaussian_linear and odd.square_scale is None
    # cubic loss: l' not affine
    assert not CustomLoss((r - y) ** 4, r, y).is_gaussian_linear
    base = dict(delta=2.0, grid=Grid(0.1, 5))
    assert DMFTSystem(**base, sample_side=SampleSide(Square(), LinearTeacher(0.1))).is_linear
    assert DMFTSystem(
        **base, sample_side=SampleSide(Square(), LinearTeacher()), weight_side=HeavyBall(0.5)
    ).is_linear
    assert not DMFTSystem(**base, sample_side=SampleSide(Square(), SignTeacher())).is_linear
    assert not DMFTSystem(**base, sample_side=SampleSide(Logistic(), LinearTeacher())).is_linear


def test_noise_multipliers_have_mean_one_and_variance_tau_over_dt(rng):
    dt, tau, size = 0.2, 0.5, 400_000
    for noise in (SGF(tau), BernoulliVisits(tau)):
        s = noise.multipliers(size, dt, rng)
        assert noise.variance(dt) == pytest.approx(tau / dt)
        assert abs(s.mean() - 1.0) < 5 * math.sqrt(tau / dt / size)
        assert abs(s.var() / (tau / dt) - 1.0) < 0.02
    s = BernoulliVisits(tau).multipliers(1000, dt, rng)
    p = dt / (tau + dt)
    assert set(np.unique(s)) <= {0.0, 1.0 / p}
    assert np.all(GD().multipliers((3, 4), dt, rng) == 1.0) and GD().variance(dt) == 0.0


def test_teachers(rng):
    w = rng.standard_normal(200_000)
    y = LinearTeacher(noise_var=0.25).labels(w, rng)
    assert abs(np.var(y - w) - 0.25) < 0.01
    assert np.all(SignTeacher().labels(w, rng) == np.sign(w))
    # flips: P(y != sign w) = flip
    flipped = np.mean(SignTeacher(flip=0.1).labels(w, rng) != np.sign(w))
    assert abs(flipped - 0.1) < 0.005
    # Gaussian label noise 0.3: P(sign(w + 0.3 xi) != sign w) = arctan(0.3) / pi
    wrong = np.mean(SignTeacher(noise=0.3).labels(w, rng) != np.sign(w))
    assert abs(wrong - math.atan(0.3) / math.pi) < 0.005
    # logistic teacher: E[y | w] = tanh(w / 2T)
    yl = LogisticTeacher(temperature=1.0).labels(np.full(100_000, 0.8), rng)
    assert abs(yl.mean() - math.tanh(0.4)) < 0.01


def test_grid_and_defaults():
    g = Grid(0.05, 4)
    assert g.size == 5 and np.allclose(g.times, [0, 0.05, 0.1, 0.15, 0.2])
    s = DMFTSystem(1.5, g, SampleSide(Square(), LinearTeacher()))
    assert s.weight_side == Ridge(0.0) and s.noise == GD() and s.init == ZeroInit() and s.teacher_norm == 1.0
    assert s.tau == 0.0 and DMFTSystem(1.5, g, s.sample_side, noise=SGF(0.3)).tau == 0.3
    assert GaussianInit(0.5).variance == 0.5


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: Grid(-0.1, 5), "dt=-0.1"),
        (lambda: Grid(float("nan"), 5), "dt=nan"),
        (lambda: Grid(0.1, 0), "steps=0"),
        (lambda: Grid(0.1, 2.5), "steps=2.5"),
        (lambda: Grid(0.1, True), "steps=True"),
        (lambda: Ridge(-1.0), "lam=-1.0"),
        (lambda: HeavyBall(-0.1), "beta=-0.1"),
        (lambda: SGF(-1.0), "tau=-1.0"),
        (lambda: SGF(1.0, ito_cross_term="yes"), "ito_cross_term='yes'"),
        (lambda: BernoulliVisits("a"), "tau='a'"),
        (lambda: SignTeacher(noise=-0.3), "noise=-0.3"),
        (lambda: LinearTeacher(noise_var=float("inf")), "noise_var=inf"),
        (lambda: SampleSide(Square(), "linear"), "teacher='linear'"),
        (lambda: CustomLoss(sp.Symbol("y") ** 2, sp.Symbol("r"), sp.Symbol("y")), "does not depend on r"),
        (lambda: CustomLoss(sp.Symbol("r"), "r", sp.Symbol("y")), "r='r'"),
        (lambda: DMFTSystem(-2.0, Grid(0.1, 2), SampleSide(Square(), LinearTeacher())), "delta=-2.0"),
        (
            lambda: DMFTSystem(2.0, Grid(0.1, 2), SampleSide(Square(), LinearTeacher()), teacher_norm=0),
            "teacher_norm=0",
        ),
        (lambda: DMFTSystem(2.0, (0.1, 2), SampleSide(Square(), LinearTeacher())), "grid=(0.1, 2)"),
        (
            lambda: DMFTSystem(2.0, Grid(0.1, 2), SampleSide(Square(), LinearTeacher()), noise="sgd"),
            "noise='sgd'",
        ),
        (
            lambda: DMFTSystem(2.0, Grid(0.1, 2), SampleSide(Square(), LinearTeacher()), weight_side=0.1),
            "weight_side=0.1",
        ),
    ],
)
def test_bad_input_names_the_value(build, fragment):
    with pytest.raises(InvalidArgument) as info:
        build()
    assert fragment in str(info.value)


def test_values_are_frozen_and_hashable():
    g = Grid(0.1, 3)
    with pytest.raises(AttributeError):
        g.dt = 0.2
    assert hash(DMFTSystem(2.0, g, SampleSide(Square(), LinearTeacher(0.1)), noise=SGF(0.5))) is not None
