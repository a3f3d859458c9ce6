"""Adam whose steps give the same bits on every x86-64 CPU, Intel's and AMD's alike.

torch's CPU square root goes through MKL's vector math (`vmsSqrt`, `vmdSqrt`), which is not correctly rounded
(15% of float32 results are off by one unit in the last place) and starts from the CPU's approximate reciprocal
square root, an instruction whose values Intel and AMD define differently: the same instruction stream gives other
bits on the other vendor's CPU, portable numerics or not (measured: docs/design-notes.md, "Numerics"). Adam takes a
square root of its second moment at every step, so torch's Adam made the fact worlds and z* vendor-dependent.
This is torch's Adam formula (decoupled weight decay, as AdamW) with IEEE's correctly rounded square root, which
every x86-64 CPU computes alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy
import torch


def exact_sqrt(values: torch.Tensor) -> torch.Tensor:
    """The correctly rounded square root of every element (the hardware instruction, through numpy on a CPU)."""
    if values.device.type != "cpu":
        return values.sqrt()  # CUDA's sqrt is IEEE-rounded
    wide = values.detach()
    if wide.dtype not in (torch.float32, torch.float64):
        wide = wide.float()  # rounding the float32 root again to 8 or 11 bits is exact (24 >= 2p + 2)
    return torch.from_numpy(numpy.sqrt(wide.numpy())).to(values.dtype)


class Adam(torch.optim.Optimizer):
    """Adam; `weight_decay` decays the weights apart from the gradient (AdamW). Same formula as torch's."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state.update(step=0, exp_avg=torch.zeros_like(param), exp_avg_sq=torch.zeros_like(param))
                state["step"] += 1
                if group["weight_decay"]:
                    param.mul_(1 - lr * group["weight_decay"])
                state["exp_avg"].lerp_(param.grad, 1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(param.grad, param.grad, value=1 - beta2)
                denominator = exact_sqrt(state["exp_avg_sq"]) / math.sqrt(1 - beta2 ** state["step"])
                param.addcdiv_(state["exp_avg"], denominator.add_(eps), value=-lr / (1 - beta1 ** state["step"]))
