"""Central finite differences (float64) of sum(f(x) * r); never imports faltung."""
import numpy as np


def numeric_grad(f, x, r, eps=1e-6):
    g = np.zeros_like(x)
    flat, gf = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = np.sum(f(x) * r)
        flat[i] = old - eps
        fm = np.sum(f(x) * r)
        flat[i] = old
        gf[i] = (fp - fm) / (2 * eps)
    return g


def central_difference(f, x, idx, eps=1e-6):
    """(f() with x[idx] + eps - f() with x[idx] - eps) / 2 eps for a scalar f() that reads x;
    x[idx] is restored. For sampled entries of large arrays (weights of whole models)."""
    old = x[idx]
    x[idx] = old + eps
    up = f()
    x[idx] = old - eps
    down = f()
    x[idx] = old
    return (up - down) / (2 * eps)
