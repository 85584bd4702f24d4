"""The torch workarounds of :mod:`fedsynth.core.torch_compat`: still needed, and changing no number.

When a torch release stops importing ``torch._dynamo`` on an optimizer's set-up or on
``Adam.step``, :func:`test_the_workarounds_are_still_needed` fails and names the workaround to
delete (with its callers and this test's part for it)."""

from __future__ import annotations

import subprocess
import sys

import torch

from fedsynth.core import torch_compat


def fresh_process(script: str) -> str:
    """Run ``script`` in a fresh interpreter; its last line of output."""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split()[-1]


def test_the_workarounds_are_still_needed():
    """torch's own paths import ``torch._dynamo``: building an optimizer (its set-up methods) and
    ``Adam.step`` (the set-up made dynamo-free first, so that only the step is looked at)."""
    setup = fresh_process(
        "import sys, torch\n"
        "torch.optim.Adam([torch.zeros(3, requires_grad=True)], lr=0.1).zero_grad()\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    step = fresh_process(
        "import sys, torch\n"
        "from fedsynth.core.torch_compat import allow_optimizer_setup_without_dynamo\n"
        "allow_optimizer_setup_without_dynamo()\n"
        "p = torch.zeros(3, dtype=torch.float64, requires_grad=True)\n"
        "optimizer = torch.optim.Adam([p], lr=0.1)\n"
        "assert 'torch._dynamo' not in sys.modules\n"
        "p.grad = torch.ones(3, dtype=torch.float64)\n"
        "optimizer.step()\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    version = torch.__version__
    assert setup == "True", (
        f"torch {version} builds an optimizer without importing torch._dynamo: delete "
        "torch_compat.allow_optimizer_setup_without_dynamo and its calls"
    )
    assert step == "True", f"torch {version}'s Adam.step no longer imports torch._dynamo: delete torch_compat.adam_step"


def test_the_workarounds_keep_torch_dynamo_out_and_change_no_number():
    """With them, an optimizer's set-up and Adam steps import no ``torch._dynamo`` and give
    torch's own update bit for bit (compared after importing ``torch._dynamo``, torch's path)."""
    script = """
import sys, torch
from fedsynth.core.torch_compat import adam_step, allow_optimizer_setup_without_dynamo
g = torch.Generator().manual_seed(0)
allow_optimizer_setup_without_dynamo()
ours = torch.randn(20, 3, generator=g, dtype=torch.float64).requires_grad_(True)
mine = torch.optim.Adam([ours], lr=0.05, fused=True)
grads = [torch.randn(20, 3, generator=g, dtype=torch.float64) for _ in range(4)]
for grad in grads:
    mine.zero_grad(set_to_none=True)
    ours.grad = grad.clone()
    adam_step(mine)
assert 'torch._dynamo' not in sys.modules, 'torch._dynamo was imported'
import torch._dynamo
theirs = torch.randn(20, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64).requires_grad_(True)
torchs = torch.optim.Adam([theirs], lr=0.05, fused=True)
for grad in grads:
    torchs.zero_grad(set_to_none=True)
    theirs.grad = grad.clone()
    torchs.step()
print(torch.equal(ours.detach(), theirs.detach()))
"""
    assert fresh_process(script) == "True"


def test_the_checked_release_is_named():
    """The workarounds were checked on the installed torch: on another release this fails until
    the two tests above pass there and CHECKED_TORCH names it."""
    assert torch_compat.CHECKED_TORCH == torch.__version__.split("+")[0], (
        f"torch {torch.__version__} is installed, the workarounds were checked on {torch_compat.CHECKED_TORCH}: "
        "check them (the tests above) and update fedsynth/core/torch_compat.py's CHECKED_TORCH"
    )
