"""The workarounds fedsynth applies to torch's internals, all of them here, each guarded.

Both keep ``torch._dynamo`` (≈ 1.6 s of CPU to import, on one core) out of processes that never
compile anything: every client process and the server's fit built an optimizer or stepped Adam,
and torch imports ``torch._dynamo`` on those paths only to mark them as not to be compiled.
Neither changes a number (tests/test_torch_compat.py checks both bit for bit against torch's own
path).

* :func:`allow_optimizer_setup_without_dynamo`: torch wraps :data:`OPTIMIZER_SETUP_METHODS` of
  ``torch.optim.Optimizer`` in ``torch._disable_dynamo``, whose first call imports
  ``torch._dynamo``. The wrapper caches the function it marked on the wrapped one (attribute
  ``__dynamo_disable``); caching the plain function there makes the first call as cheap as the
  later ones.
* :func:`adam_step`: torch wraps ``Adam.step`` in a grad-mode wrapper that imports
  ``torch._dynamo`` on every call (to mark a graph break) and in a hook wrapper (step hooks under
  the profiler's label). This runs the wrapped step itself, with gradients off as the wrapper
  would (``differentiable=False``); fedsynth registers no step hook.

Guards: each applies only where torch has the structure it relies on (a wrapped function with
the ``__dynamo_disable`` cache; an ``Adam.step`` that ``inspect.unwrap`` can unwrap), and never once
``torch._dynamo`` is imported (``torch.compile`` in the same process): then torch's own paths
run. :data:`CHECKED_TORCH` is the torch release they were last checked on;
``tests/test_torch_compat.py::test_the_workarounds_are_still_needed`` fails, saying which one can
go, on a torch whose own paths no longer import ``torch._dynamo``.

A third torch matter is a comment, not a patch: torch 2.13's fused CPU Adam mis-updates a strided
parameter, so the synthesis keeps x̂ its own contiguous tensor (``fedsynth.core.synthesis``).
"""

from __future__ import annotations

import inspect
import sys

import torch

CHECKED_TORCH = "2.13.0"
"""The torch release the workarounds were last checked on (tests/test_torch_compat.py)."""

OPTIMIZER_SETUP_METHODS = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")
"""The ``torch.optim.Optimizer`` methods torch wraps in ``torch._disable_dynamo``."""

_PLAIN_ADAM_STEP = inspect.unwrap(torch.optim.Adam.step)
"""``torch.optim.Adam.step`` without torch's wrappers (see :func:`adam_step`)."""


def allow_optimizer_setup_without_dynamo() -> None:
    """Let ``torch.optim.Optimizer``'s set-up methods (:data:`OPTIMIZER_SETUP_METHODS`) run
    without importing ``torch._dynamo``; call it before building an optimizer. Idempotent; does
    nothing once ``torch._dynamo`` is imported, or for a method torch does not wrap that way."""
    if "torch._dynamo" in sys.modules:
        return
    for name in OPTIMIZER_SETUP_METHODS:
        function = getattr(getattr(torch.optim.Optimizer, name), "__wrapped__", None)
        if function is not None and getattr(function, "__dynamo_disable", None) is None:
            setattr(function, "__dynamo_disable", function)


def adam_step(optimizer: torch.optim.Adam) -> None:
    """``optimizer.step()``, the same update to the bit, without importing ``torch._dynamo``
    (torch's own ``step`` once ``torch._dynamo`` is imported, or where there is no wrapper)."""
    if "torch._dynamo" in sys.modules or _PLAIN_ADAM_STEP is torch.optim.Adam.step:
        optimizer.step()
        return
    with torch.no_grad():
        _PLAIN_ADAM_STEP(optimizer)
