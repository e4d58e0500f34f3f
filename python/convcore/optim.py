"""Parameters and the optimisers (the tutorial's third step: update w and b): SGD (with
momentum, Nesterov momentum and weight decay), Adam and AdamW, each on a native update step."""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional

import numpy as np

from . import _core
from ._shown import shown
from .functional import sgd_update
from ._public import public_dir as _public_dir

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "Parameter"]
__dir__ = _public_dir(globals())


class Parameter:
    """A trainable array with its gradient buffer (same shape and dtype, accumulated into).

    ``data`` is updated in place by the optimiser; ``grad`` is added to by backward passes until
    :meth:`zero_grad`; ``velocity`` is created by a momentum optimiser on first use.
    ``decay`` tells whether weight decay applies (False for biases by default).
    """

    def __init__(self, data: np.ndarray, decay: bool = True, name: str = ""):
        self.data = np.ascontiguousarray(data)
        self.grad = np.zeros_like(self.data)
        self.velocity: Optional[np.ndarray] = None
        self.decay = decay
        self.name = name

    def zero_grad(self) -> None:
        """Sets the gradient to 0 (in place: views of it stay valid)."""
        self.grad.fill(0)

    def __repr__(self) -> str:
        return f"Parameter({self.name or 'unnamed'}, shape={self.data.shape}, dtype={self.data.dtype})"


def _check_hyper(name: str, value, upper: Optional[float] = None) -> float:
    """``value`` as a float, finite and >= 0 (and < ``upper`` when given), else ValueError."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        msg = f"{name}: expected a number, got {shown(value)}"
        raise TypeError(msg) from None
    if not np.isfinite(v) or v < 0 or (upper is not None and v >= upper):
        bound = f"in [0, {upper})" if upper is not None else "finite and >= 0"
        msg = f"{name}: must be {bound}, got {value}"
        raise ValueError(msg)
    return v


class Optimizer:
    """Base of the optimisers: the parameter list, per-parameter state, ``zero_grad`` and
    ``state_dict()`` / ``load_state_dict()``.

    ``state_dict()`` returns ``{"state": {index: {name: value}}, "param_groups": [{hyper-
    parameters}]}`` (PyTorch's layout, one group): the state of parameter ``index`` (its
    position in ``params``), copied; ``load_state_dict`` copies such a dict back, checking the
    parameter count and every array's shape and dtype first (ValueError naming the entry, and
    nothing changed).
    """

    _hyper: tuple = ()

    def __init__(self, params: Iterable[Parameter]):
        self.params: List[Parameter] = list(params)
        for p in self.params:
            if not isinstance(p, Parameter):
                msg = f"params: expected Parameter objects, got {type(p).__name__}"
                raise TypeError(msg)

    def _get_state(self, i: int) -> Dict[str, Any]:
        raise NotImplementedError

    def _set_state(self, i: int, state: Dict[str, Any]) -> None:
        raise NotImplementedError

    def _state_keys(self) -> Dict[str, bool]:
        """Names of a parameter's state entries -> whether the entry is an array."""
        raise NotImplementedError

    def zero_grad(self) -> None:
        """Zeroes the gradient of every parameter."""
        for p in self.params:
            p.zero_grad()

    def state_dict(self) -> Dict[str, Any]:
        """Copies of the optimiser's state and hyper-parameters (see the class docstring)."""
        state = {}
        for i in range(len(self.params)):
            entry = self._get_state(i)
            if entry:
                state[i] = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in entry.items()}
        group = {name: getattr(self, name) for name in self._hyper}
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restores what :meth:`state_dict` returned (of an optimiser over parameters of the same
        shapes and dtypes, in the same order)."""
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            msg = "load_state_dict: expected a dict with the keys 'state' and 'param_groups'"
            raise ValueError(msg)
        groups = state_dict["param_groups"]
        if len(groups) != 1 or set(groups[0]) != set(self._hyper):
            msg = (f"load_state_dict: expected one param group with the keys {sorted(self._hyper)}, "
                   f"got {[sorted(g) for g in groups]}")
            raise ValueError(msg)
        keys = self._state_keys()
        checked = {}
        for i, entry in state_dict["state"].items():
            if not isinstance(i, (int, np.integer)) or not 0 <= i < len(self.params):
                msg = f"load_state_dict: state index {i!r} is not that of one of the {len(self.params)} parameters"
                raise ValueError(msg)
            if set(entry) != set(keys):
                msg = f"load_state_dict: state[{i}] has the keys {sorted(entry)}, expected {sorted(keys)}"
                raise ValueError(msg)
            p = self.params[i]
            out = {}
            for k, is_array in keys.items():
                v = entry[k]
                if is_array:
                    a = np.asarray(v)
                    if a.shape != p.data.shape or a.dtype != p.data.dtype:
                        msg = (f"load_state_dict: state[{i}][{k!r}] is {a.dtype} {a.shape}, expected "
                               f"{p.data.dtype} {p.data.shape} (parameter {p.name or i!r})")
                        raise ValueError(msg)
                    out[k] = np.array(a, copy=True, order="C")
                else:
                    out[k] = int(v)
            checked[int(i)] = out
        for name in self._hyper:  # validated by the constructor's rules
            setattr(self, name, type(self)._validate(name, groups[0][name]))
        for i in range(len(self.params)):
            self._set_state(i, checked.get(i, {}))

    @staticmethod
    def _validate(name: str, value):
        return value

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._hyper)
        return f"{type(self).__name__}({len(self.params)} parameters, {args})"


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, Nesterov momentum and weight decay, through
    the native update (``torch.optim.SGD`` with dampening 0).

    ``d = grad + weight_decay*param; v = momentum*v + d; param -= lr*v`` for every parameter
    (weight decay only where ``param.decay``); with ``nesterov=True`` the step is
    ``param -= lr*(d + momentum*v)``, which needs ``momentum > 0``. With momentum 0 this is the
    tutorial's ``w -= lr*dw``. The velocity lives on the parameter (``Parameter.velocity``,
    PyTorch's ``momentum_buffer`` in :meth:`state_dict`).
    """

    _hyper = ("lr", "momentum", "weight_decay", "nesterov")

    def __init__(self, params: Iterable[Parameter], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(params)
        self.lr = _check_hyper("lr", lr)
        self.momentum = _check_hyper("momentum", momentum)
        self.weight_decay = _check_hyper("weight_decay", weight_decay)
        self.nesterov = self._validate("nesterov", nesterov)
        if self.nesterov and self.momentum == 0:
            msg = "nesterov: Nesterov momentum requires momentum > 0"
            raise ValueError(msg)

    @staticmethod
    def _validate(name: str, value):
        if name == "nesterov":
            if not isinstance(value, (bool, np.bool_)):
                msg = f"nesterov: expected True or False, got {shown(value)}"
                raise TypeError(msg)
            return bool(value)
        return _check_hyper(name, value)

    def step(self) -> None:
        """Applies one update to every parameter from its accumulated gradient."""
        for p in self.params:
            if self.momentum != 0 and p.velocity is None:
                p.velocity = np.zeros_like(p.data)
            sgd_update(p.data, p.grad, self.lr, self.momentum,
                       self.weight_decay if p.decay else 0.0,
                       p.velocity if self.momentum != 0 else None, nesterov=self.nesterov)

    def _state_keys(self):
        return {"momentum_buffer": True}

    def _get_state(self, i):
        v = self.params[i].velocity
        return {} if v is None else {"momentum_buffer": v}

    def _set_state(self, i, state):
        self.params[i].velocity = state.get("momentum_buffer")


class Adam(Optimizer):
    """Adam (``torch.optim.Adam``, amsgrad off), through the native update.

    Per parameter, with ``t`` its step count after this step and ``d = grad +
    weight_decay*param`` (decay only where ``param.decay``)::

        m = beta1*m + (1-beta1)*d;   v = beta2*v + (1-beta2)*d*d
        param -= lr/(1-beta1**t) * m / (sqrt(v)/sqrt(1-beta2**t) + eps)

    State per parameter (in :meth:`state_dict`): ``step``, ``exp_avg`` (m), ``exp_avg_sq`` (v).
    """

    _hyper = ("lr", "beta1", "beta2", "eps", "weight_decay")
    _decoupled = False

    def __init__(self, params: Iterable[Parameter], lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params)
        try:
            beta1, beta2 = betas
        except (TypeError, ValueError):
            msg = f"betas: expected a pair (beta1, beta2), got {shown(betas)}"
            raise ValueError(msg) from None
        self.lr = _check_hyper("lr", lr)
        self.beta1 = _check_hyper("beta1", beta1, upper=1.0)
        self.beta2 = _check_hyper("beta2", beta2, upper=1.0)
        self.eps = _check_hyper("eps", eps)
        self.weight_decay = _check_hyper("weight_decay", weight_decay)
        self.state: List[Dict[str, Any]] = [{} for _ in self.params]

    @property
    def betas(self):
        return (self.beta1, self.beta2)

    @staticmethod
    def _validate(name: str, value):
        return _check_hyper(name, value, upper=1.0 if name in ("beta1", "beta2") else None)

    def step(self) -> None:
        """Applies one update to every parameter from its accumulated gradient."""
        for p, st in zip(self.params, self.state):
            if not st:
                st.update(step=0, exp_avg=np.zeros_like(p.data), exp_avg_sq=np.zeros_like(p.data))
            g = np.ascontiguousarray(p.grad, dtype=p.data.dtype)
            _core.adam_update(p.data, g, st["exp_avg"], st["exp_avg_sq"], st["step"] + 1, self.lr,
                              self.beta1, self.beta2, self.eps, self.weight_decay if p.decay else 0.0,
                              self._decoupled)
            st["step"] += 1  # counted once the update has been applied

    def _state_keys(self):
        return {"step": False, "exp_avg": True, "exp_avg_sq": True}

    def _get_state(self, i):
        return self.state[i]

    def _set_state(self, i, state):
        self.state[i] = state


class AdamW(Adam):
    """AdamW (``torch.optim.AdamW``): Adam with decoupled weight decay, ``param *= 1 -
    lr*weight_decay`` before the Adam step on the plain gradient (decay only where
    ``param.decay``; PyTorch's default ``weight_decay=0.01``)."""

    _decoupled = True

    def __init__(self, params: Iterable[Parameter], lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)
