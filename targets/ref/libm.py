"""C's float math (expf, tanhf, erff ...) on float32 arrays.

ggml calls the f32 libm functions. numpy's own float32 kernels may differ from them by an ulp, so each
function here evaluates in float64 and rounds once to float32: the correctly rounded result, which is
what glibc's f32 functions return in (almost) every case. The arithmetic around these calls is done
in float32 in the same order as ggml's C code, so intermediate roundings match too.
"""
from __future__ import annotations

import numpy as np

F32 = np.float32


def f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _via64(fn):
    def f(x):
        with np.errstate(all="ignore"):
            return fn(np.asarray(x, dtype=np.float64)).astype(np.float32)
    f.__name__ = fn.__name__ + "f"
    return f


expf = _via64(np.exp)
logf = _via64(np.log)
tanhf = _via64(np.tanh)
sinf = _via64(np.sin)
cosf = _via64(np.cos)
expm1f = _via64(np.expm1)


def _erf64(x: np.ndarray) -> np.ndarray:
    """erf in float64 to ~1e-14: Maclaurin series for |x| < 2, erfc continued fraction above."""
    ax = np.abs(x)
    out = np.empty_like(ax)
    small = ax < 2.0
    xs = ax[small]
    # erf(x) = 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1)); 60 terms reach 1e-17 at |x| = 2
    term = xs.copy()
    acc = xs.copy()
    x2 = xs * xs
    for n in range(1, 60):
        term = term * (-x2) / n
        acc = acc + term / (2 * n + 1)
    out[small] = acc * (2.0 / np.sqrt(np.pi))
    xl = ax[~small]
    # erfc(x) = exp(-x^2)/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))), evaluated backwards
    k = xl.copy()
    for n in range(80, 0, -1):
        k = xl + (n / 2.0) / k
    with np.errstate(under="ignore"):
        out[~small] = 1.0 - np.exp(-xl * xl) / (np.sqrt(np.pi) * k)
    return np.where(np.isnan(x), np.nan, np.copysign(out, x))


erff = _via64(_erf64)


def powf(base: float, e) -> np.ndarray:
    return _via64(lambda v: np.power(np.float64(np.float32(base)), v))(e)
