"""The two optimisers of test-time work (fitting an encoding, refining vertices), without ``torch.optim``.

``torch.optim`` imports ``torch._dynamo`` when a process makes its first
optimizer: 2.5 s of every CLI run that fits or refines, more than the fit
itself. These follow ``torch.optim.Adam`` and ``torch.optim.RMSprop`` with their
default settings, update for update and in the same order (tests hold them to
torch's within 1e-6); training keeps ``torch.optim``.
"""

from __future__ import annotations

import torch

__all__ = ["Adam", "RMSprop"]


class Adam:
    """Adam (Kingma & Ba) on a few leaf tensors; ``step`` consumes and clears their gradients."""

    def __init__(self, tensors: list[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.tensors, self.lr, self.betas, self.eps = list(tensors), lr, betas, eps
        self.first = [torch.zeros_like(t) for t in self.tensors]
        self.second = [torch.zeros_like(t) for t in self.tensors]
        self.steps = 0

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        beta1, beta2 = self.betas
        step_size = self.lr / (1 - beta1**self.steps)
        correction2 = (1 - beta2**self.steps) ** 0.5
        for tensor, first, second in zip(self.tensors, self.first, self.second):
            if tensor.grad is None:
                continue
            first.lerp_(tensor.grad, 1 - beta1)
            second.mul_(beta2).addcmul_(tensor.grad, tensor.grad, value=1 - beta2)
            tensor.addcdiv_(first, (second.sqrt() / correction2).add_(self.eps), value=-step_size)
            tensor.grad = None


class RMSprop:
    """RMSprop (Hinton), not centred, no momentum, on a few leaf tensors; ``step`` consumes and clears their gradients."""

    def __init__(self, tensors: list[torch.Tensor], lr: float, alpha: float = 0.99, eps: float = 1e-8) -> None:
        self.tensors, self.lr, self.alpha, self.eps = list(tensors), lr, alpha, eps
        self.square = [torch.zeros_like(t) for t in self.tensors]

    @torch.no_grad()
    def step(self) -> None:
        for tensor, square in zip(self.tensors, self.square):
            if tensor.grad is None:
                continue
            square.mul_(self.alpha).addcmul_(tensor.grad, tensor.grad, value=1 - self.alpha)
            tensor.addcdiv_(tensor.grad, square.sqrt().add_(self.eps), value=-self.lr)
            tensor.grad = None
