"""Optimizers ``adam``, ``adamw`` and ``sgd``: torch's, with their parameters as config.

A trainer names its optimizer in a nested section (``trainer.optimizer: {name: adam,
lr: 0.01, weight_decay: 5.0e-4}``) and builds it over the parameters it trains.

Parameters tagged ``sparse_grad = True`` (the rows of a huge class table, see
:mod:`zoo_plugins.tasks.sampled_softmax`) receive sparse gradients, which torch's Adam
and AdamW refuse. When there are any, ``adam``/``adamw`` return a :class:`SplitOptimizer`:
the configured optimizer over the other parameters and ``torch.optim.SparseAdam`` over
the tagged ones. Without tagged parameters they return torch's optimizer, unchanged.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Annotated, Any

import torch

import zoo
from zoo.schema import Ge, Gt, Lt

LR = Annotated[float, Gt(0)]
Decay = Annotated[float, Ge(0)]
Beta = Annotated[float, Ge(0), Lt(1)]
Params = list[torch.nn.Parameter]


class _JointState(Mapping):
    """The inner optimizers' per-parameter state, read through (each keeps its own; read
    live, since ``load_state_dict`` replaces an optimizer's state dict)."""

    def __init__(self, optimizers: tuple[torch.optim.Optimizer, ...]) -> None:
        self._optimizers = optimizers

    def __getitem__(self, param: torch.Tensor) -> dict[str, Any]:
        for opt in self._optimizers:
            if param in opt.state:
                return opt.state[param]
        raise KeyError(param)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return itertools.chain.from_iterable(opt.state for opt in self._optimizers)

    def __len__(self) -> int:
        return sum(len(opt.state) for opt in self._optimizers)


class SplitOptimizer(torch.optim.Optimizer):
    """A dense optimizer and a sparse one (``SparseAdam``; for ``sgd``, plain SGD) acting
    as one optimizer, over the untagged and the ``sparse_grad`` parameters.

    ``param_groups`` is the dense optimizer's groups followed by the sparse one's: the
    same dicts, so an LR scheduler that sets ``group["lr"]`` steers the inner optimizer
    owning the group. ``step``, ``zero_grad``, ``state_dict`` and ``load_state_dict``
    delegate (the state dict holds one entry per inner optimizer); ``state`` reads the
    inner states. ``SparseAdam`` has no weight decay and no AMSGrad: weight decay applies
    to the dense parameters only (AMSGrad is refused).

    The base class is initialised with the inner optimizers' group dicts, so its hook
    tables, profiling wrapper of ``step`` and ``param_groups`` are torch's own, and
    ``isinstance(opt, torch.optim.Optimizer)`` holds; after that, adding a group is
    refused, since it could not say which inner optimizer owns it.
    """

    def __init__(self, dense: torch.optim.Optimizer | None,
                 sparse: torch.optim.Optimizer) -> None:
        self.optimizers = tuple(opt for opt in (dense, sparse) if opt is not None)
        self._adopting = True
        super().__init__([g for opt in self.optimizers for g in opt.param_groups], {})
        self._adopting = False
        self.state = _JointState(self.optimizers)

    def __getstate__(self) -> dict[str, Any]:
        # The base pickles only defaults, state and groups; the inner optimizers too.
        return dict(self.__dict__)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Only while adopting the inner optimizers' groups; afterwards not supported."""
        if not self._adopting:
            raise NotImplementedError(
                "SplitOptimizer cannot add a parameter group: build a new optimizer over "
                "all the parameters (it splits them between a dense and a sparse optimizer)")
        super().add_param_group(param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One step of every inner optimizer (``closure``, if given, is evaluated once)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for opt in self.optimizers:
            opt.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [opt.state_dict() for opt in self.optimizers]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        inner = state_dict["optimizers"]
        if len(inner) != len(self.optimizers):
            raise ValueError(f"the state dict holds {len(inner)} optimizers, this "
                             f"SplitOptimizer {len(self.optimizers)}")
        for opt, sd in zip(self.optimizers, inner, strict=True):
            opt.load_state_dict(sd)
        # Loading replaces the inner group dicts: share the new ones.
        self.param_groups = [g for opt in self.optimizers for g in opt.param_groups]


def _split_sparse(params: Params, dense: Callable[[Params], torch.optim.Optimizer],
                  sparse: Callable[[Params], torch.optim.Optimizer]
                  ) -> torch.optim.Optimizer:
    """``dense(params)``, or a SplitOptimizer when some parameters are tagged
    ``sparse_grad`` (parameter-group dicts are passed through untouched)."""
    tagged = [p for p in params if getattr(p, "sparse_grad", False)]
    if not tagged:
        return dense(params)
    rest = [p for p in params if not getattr(p, "sparse_grad", False)]
    return SplitOptimizer(dense(rest) if rest else None, sparse(tagged))


def _fused(params: Params) -> bool | None:
    """Whether torch's fused Adam kernel takes these parameters (floating point, on the
    CPU or a CUDA device): one kernel per step instead of a dozen operations per
    tensor, 3 times faster on a CPU for a GCN's weights, the same update up to
    rounding. None (torch's default) for anything else, parameter groups included."""
    tensors = list(params)
    if tensors and all(isinstance(p, torch.Tensor) and p.is_floating_point()
                       and p.device.type in ("cpu", "cuda") for p in tensors):
        return True
    return None


def _sparse_adam(name: str, lr: float, beta1: float, beta2: float, eps: float,
                 amsgrad: bool) -> Callable[[Params], torch.optim.Optimizer]:
    def build(params: Params) -> torch.optim.Optimizer:
        if amsgrad:
            raise zoo.ConfigError(
                f"optimizer '{name}': amsgrad is not available for parameters with sparse "
                "gradients (SparseAdam); set amsgrad: false")
        return torch.optim.SparseAdam(params, lr=lr, betas=(beta1, beta2), eps=eps)
    return build


def adam(params: Iterable[torch.nn.Parameter], *, lr: LR = 0.001, weight_decay: Decay = 0.0,
         beta1: Beta = 0.9, beta2: Beta = 0.999, eps: Annotated[float, Gt(0)] = 1e-8,
         amsgrad: bool = False) -> torch.optim.Optimizer:
    """Adam (Kingma & Ba 2015), with L2 weight decay added to the gradient (torch.optim.Adam,
    its fused kernel where the parameters allow).

    Parameters tagged ``sparse_grad`` get ``SparseAdam`` (same lr, betas, eps; no weight
    decay, no AMSGrad) inside a :class:`SplitOptimizer`.

    Args:
        lr: learning rate.
        weight_decay: L2 penalty added to the gradient (Kipf & Welling's 5e-4 is this).
        beta1: decay of the first-moment estimate.
        beta2: decay of the second-moment estimate.
        eps: added to the denominator for numerical stability.
        amsgrad: use the AMSGrad variant.
    """
    return _split_sparse(
        list(params),
        lambda ps: torch.optim.Adam(ps, lr=lr, weight_decay=weight_decay,
                                    betas=(beta1, beta2), eps=eps, amsgrad=amsgrad,
                                    fused=_fused(ps)),
        _sparse_adam("adam", lr, beta1, beta2, eps, amsgrad))


def adamw(params: Iterable[torch.nn.Parameter], *, lr: LR = 0.001, weight_decay: Decay = 0.01,
          beta1: Beta = 0.9, beta2: Beta = 0.999, eps: Annotated[float, Gt(0)] = 1e-8,
          amsgrad: bool = False) -> torch.optim.Optimizer:
    """AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay (torch.optim.AdamW).

    Parameters tagged ``sparse_grad`` get ``SparseAdam`` (same lr, betas, eps; no weight
    decay, no AMSGrad) inside a :class:`SplitOptimizer`.

    Args:
        lr: learning rate.
        weight_decay: decoupled weight decay (applied to the weights, not the gradient).
        beta1: decay of the first-moment estimate.
        beta2: decay of the second-moment estimate.
        eps: added to the denominator for numerical stability.
        amsgrad: use the AMSGrad variant.
    """
    return _split_sparse(
        list(params),
        lambda ps: torch.optim.AdamW(ps, lr=lr, weight_decay=weight_decay,
                                     betas=(beta1, beta2), eps=eps, amsgrad=amsgrad,
                                     fused=_fused(ps)),
        _sparse_adam("adamw", lr, beta1, beta2, eps, amsgrad))


def sgd(params: Iterable[torch.nn.Parameter], *, lr: LR = 0.01, weight_decay: Decay = 0.0,
        momentum: Annotated[float, Ge(0)] = 0.0, nesterov: bool = False,
        ) -> torch.optim.Optimizer:
    """Stochastic gradient descent with optional (Nesterov) momentum (torch.optim.SGD).

    torch's SGD takes the sparse gradients of parameters tagged ``sparse_grad`` as they
    are when momentum and weight decay are 0. Otherwise those parameters get plain SGD
    inside a :class:`SplitOptimizer` (weight decay fails on sparse gradients, and a sparse
    momentum buffer grows without bound): momentum and decay apply to the others only.

    Args:
        lr: learning rate.
        weight_decay: L2 penalty added to the gradient.
        momentum: momentum factor (0: plain SGD).
        nesterov: Nesterov momentum (needs momentum > 0).
    """
    if nesterov and momentum <= 0:
        raise zoo.ConfigError("optimizer 'sgd': nesterov needs momentum > 0")
    def dense(ps: Params) -> torch.optim.Optimizer:
        return torch.optim.SGD(ps, lr=lr, weight_decay=weight_decay, momentum=momentum,
                               nesterov=nesterov)

    params = list(params)
    if momentum == 0 and weight_decay == 0:
        return dense(params)
    return _split_sparse(params, dense, lambda ps: torch.optim.SGD(ps, lr=lr))


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("optimizer", "adam", adam)
    registry.add("optimizer", "adamw", adamw)
    registry.add("optimizer", "sgd", sgd)
