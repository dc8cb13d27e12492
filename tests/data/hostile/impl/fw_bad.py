"""Hostile PyTorch / JAX / second-order candidates for tests/test_hostile_new.py (loss = sum((X @ w)**2))."""
import numpy as np


def t_none(X, w):
    return None


def t_string(X, w):
    return "w"


def t_generator(X, w):
    return (g for g in [2 * X.T @ (X @ w)])


def t_sparse(X, w):
    return {"w": (2 * X.T @ (X @ w)).to_sparse()}


def t_meta(X, w):
    import torch
    return {"w": torch.empty(w.shape, device="meta", dtype=w.dtype)}


def ta_not_scalar(X, w):
    return (X @ w) ** 2


def ta_ok(X, w):
    return ((X @ w) ** 2).sum()


def jg_not_scalar(X, w):
    return (X @ w) ** 2


def jg_int(X, w):
    return 3


def _functions():
    import torch

    class WrongCount(torch.autograd.Function):
        """backward returns one gradient for two inputs."""

        @staticmethod
        def forward(ctx, X, w):
            ctx.save_for_backward(X, w)
            return ((X @ w) ** 2).sum()

        @staticmethod
        def backward(ctx, g):
            X, w = ctx.saved_tensors
            return (g * 2 * X.T @ (X @ w),)

    class BackwardRaises(torch.autograd.Function):
        @staticmethod
        def forward(ctx, X, w):
            return ((X @ w) ** 2).sum()

        @staticmethod
        def backward(ctx, g):
            raise ValueError("backward broke")

    return WrongCount, BackwardRaises


try:  # module level, as users write them; the module is only imported where torch is installed
    WrongCount, BackwardRaises = _functions()
except ImportError:  # pragma: no cover
    pass
