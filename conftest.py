import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pytest
import sympy as sp

import detequiv as de


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace):
    doctest_namespace["sp"] = sp
    doctest_namespace["de"] = de
    doctest_namespace["np"] = np


@pytest.fixture
def rng():
    return np.random.default_rng(20261123)
