"""Logistic regression in PyTorch with a custom softplus: autograd.Function forward and backward."""
import torch


class Softplus(torch.autograd.Function):
    """softplus(z) = log(1 + e^z), evaluated without overflow; d/dz = sigmoid(z)."""

    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return torch.log1p(torch.exp(-z.abs())) + z.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        return grad * torch.sigmoid(z)


class SoftplusSignSlip(Softplus):
    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        return grad * torch.sigmoid(-z)  # BUG: sigmoid(-z) is the derivative of softplus(-z), not softplus(z)


def forward(X, y, w):
    return Softplus.apply(-y * (X @ w)).mean()


def forward_buggy_softplus(X, y, w):
    return SoftplusSignSlip.apply(-y * (X @ w)).mean()


def gradient(X, y, w):
    # dL/dw = -X^T (y * sigmoid(-y X w)) / n, computed in the input dtype
    s = torch.sigmoid(-y * (X @ w))
    return {"w": -(X.T @ (y * s)) / X.shape[0]}


class LogisticLoss(torch.autograd.Function):
    """The whole loss as one op: apply(X, y, w) in the case's symbol order."""

    @staticmethod
    def forward(ctx, X, y, w):
        z = -y * (X @ w)
        ctx.save_for_backward(X, y, z)
        return (torch.log1p(torch.exp(-z.abs())) + z.clamp(min=0)).mean()

    @staticmethod
    def backward(ctx, grad):
        X, y, z = ctx.saved_tensors
        return None, None, grad * (X.T @ (-y * torch.sigmoid(z))) / X.shape[0]


class LogisticLossForgotMean(LogisticLoss):
    @staticmethod
    def backward(ctx, grad):
        X, y, z = ctx.saved_tensors
        return None, None, grad * (X.T @ (-y * torch.sigmoid(z)))  # BUG: the 1/n of the mean is missing
