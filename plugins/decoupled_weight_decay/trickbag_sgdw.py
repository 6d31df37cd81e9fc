"""SGD with momentum as Loshchilov & Hutter write it in Algorithm 1 of "Decoupled Weight Decay
Regularization" (ICLR 2019): the scheduled learning rate goes *into* the momentum buffer,

    m_t = beta_1 * m_{t-1} + eta_t * alpha * g_t        x_t = x_{t-1} - m_t

torch's SGD keeps the LR outside the buffer (``b_t = mu * b_{t-1} + g_t``, ``x_t = x_{t-1} -
lr_t * b_t``): the two agree while the LR is constant, but under a schedule torch's form rescales
every past gradient by today's LR, the paper's keeps each at the LR it was taken with.

Algorithm 1's decay term ``- eta_t * w * x_{t-1}`` is not in this class: the
decoupled_weight_decay trick applies it to x_{t-1} just before every optimizer's step, this one
included. Alone, this is plain SGD with the paper's momentum (the optimizer ``sgdw`` of that trick).
"""
from __future__ import annotations

import torch


class LRInBufferSGD(torch.optim.Optimizer):
    def __init__(self, params, lr: float, momentum: float = 0.0) -> None:
        if lr < 0:
            raise ValueError(f"lr {lr} must be >= 0")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum {momentum} must be in [0, 1)")
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("sgdw does not support sparse gradients")
            buffers = [self._buffer(p) for p in params]
            # m_t = beta_1 m_{t-1} + lr_t g_t (m_0 = 0, as the paper initialises it); x_t = x_{t-1} - m_t
            torch._foreach_mul_(buffers, group["momentum"])
            torch._foreach_add_(buffers, [p.grad for p in params], alpha=group["lr"])
            torch._foreach_sub_(params, buffers)
        return loss

    def _buffer(self, p: torch.Tensor) -> torch.Tensor:
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state["momentum_buffer"]
