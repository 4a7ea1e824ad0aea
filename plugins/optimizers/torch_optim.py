"""Optimizers ``adam``, ``adamw`` and ``sgd``: torch's, with their parameters as config.

A trainer names its optimizer in a nested section (``trainer.optimizer: {name: adam,
lr: 0.01, weight_decay: 5.0e-4}``) and builds it over the parameters it trains.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

import torch

import zoo
from zoo.schema import Ge, Gt, Lt

LR = Annotated[float, Gt(0)]
Decay = Annotated[float, Ge(0)]
Beta = Annotated[float, Ge(0), Lt(1)]


def adam(params: Iterable[torch.nn.Parameter], *, lr: LR = 0.001, weight_decay: Decay = 0.0,
         beta1: Beta = 0.9, beta2: Beta = 0.999, eps: Annotated[float, Gt(0)] = 1e-8,
         amsgrad: bool = False) -> torch.optim.Optimizer:
    """Adam (Kingma & Ba 2015), with L2 weight decay added to the gradient (torch.optim.Adam).

    Args:
        lr: learning rate.
        weight_decay: L2 penalty added to the gradient (Kipf & Welling's 5e-4 is this).
        beta1: decay of the first-moment estimate.
        beta2: decay of the second-moment estimate.
        eps: added to the denominator for numerical stability.
        amsgrad: use the AMSGrad variant.
    """
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, betas=(beta1, beta2),
                            eps=eps, amsgrad=amsgrad)


def adamw(params: Iterable[torch.nn.Parameter], *, lr: LR = 0.001, weight_decay: Decay = 0.01,
          beta1: Beta = 0.9, beta2: Beta = 0.999, eps: Annotated[float, Gt(0)] = 1e-8,
          amsgrad: bool = False) -> torch.optim.Optimizer:
    """AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay (torch.optim.AdamW).

    Args:
        lr: learning rate.
        weight_decay: decoupled weight decay (applied to the weights, not the gradient).
        beta1: decay of the first-moment estimate.
        beta2: decay of the second-moment estimate.
        eps: added to the denominator for numerical stability.
        amsgrad: use the AMSGrad variant.
    """
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(beta1, beta2),
                             eps=eps, amsgrad=amsgrad)


def sgd(params: Iterable[torch.nn.Parameter], *, lr: LR = 0.01, weight_decay: Decay = 0.0,
        momentum: Annotated[float, Ge(0)] = 0.0, nesterov: bool = False,
        ) -> torch.optim.Optimizer:
    """Stochastic gradient descent with optional (Nesterov) momentum (torch.optim.SGD).

    Args:
        lr: learning rate.
        weight_decay: L2 penalty added to the gradient.
        momentum: momentum factor (0: plain SGD).
        nesterov: Nesterov momentum (needs momentum > 0).
    """
    if nesterov and momentum <= 0:
        raise zoo.ConfigError("optimizer 'sgd': nesterov needs momentum > 0")
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=momentum,
                           nesterov=nesterov)


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("optimizer", "adam", adam)
    registry.add("optimizer", "adamw", adamw)
    registry.add("optimizer", "sgd", sgd)
