"""DP-FedAvg with record-level differential privacy: FedAvg whose clients train by DP-SGD (Opacus).

Each round every client runs ``local_epochs`` epochs of DP-SGD (Abadi et al. 2016) from the
received θ with Opacus's own parts: a :class:`~opacus.data_loader.DPDataLoader` draws Poisson
samples of rate ``sample_rate`` (``int(1/sample_rate)`` steps an epoch), a
:class:`~opacus.GradSampleModule` gives the per-example gradients of the logistic loss, and a
:class:`~opacus.optimizers.DPOptimizer` clips each to ``privacy.clip`` and adds Gaussian noise
(averaged over the public ``batch_size``; the ridge λ_θ/n² θ of ℓ_r is weight decay, added after
the noise). The noise multiplier is the one that makes all R · E / q steps of the client spend
(ε, δ) (:func:`fedsynth.privacy.accounting.noise_multiplier`): the budget covers every θ_k the
client sends. A client's ``num-examples`` would reveal N exactly, so every client reports 1 and
the server averages the clients' models with equal weights.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from flwr.app import RecordDict

from fedsynth.data.types import ClientPartition
from fedsynth.methods.base import THETA, Communicator, ServerResult, arrays_of, config_of, make_content
from fedsynth.methods.fedavg import NUM_EXAMPLES, FedAvg
from fedsynth.privacy.accounting import PrivacyStatement, Release, noise_multiplier
from fedsynth.privacy.budget import ClippedBudget, required_budget


@dataclass(kw_only=True, eq=False)
class DPFedAvg(FedAvg):
    """FedAvg of ℓ_r (eq. 11) with DP-SGD on every client.

    Args (besides :class:`~fedsynth.methods.fedavg.FedAvg`'s):
        privacy: ``method.privacy`` (:class:`~fedsynth.privacy.budget.ClippedBudget`;
            ``epsilon`` required, ``clip`` the per-example gradient norm bound).
        sample_rate: q, the Poisson sampling rate of a DP-SGD step (public: it does not depend on
            N); ``batch_size`` is the expected batch the noisy sum is averaged over.
    """

    name = "dp_fedavg"
    binary_sensitive_only = True
    payload_arrays: ClassVar[tuple[str, ...]] = (THETA,)
    privacy: Mapping[str, Any] = field(default_factory=dict)
    sample_rate: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        self.sample_rate = float(self.sample_rate)
        if not (0 < self.sample_rate <= 1):
            raise ValueError(f"sample_rate must be in (0, 1], got {self.sample_rate}")
        self.budget = required_budget(ClippedBudget, self.privacy, "dp_fedavg")

    @property
    def steps_per_epoch(self) -> int:
        """DP-SGD steps in one local epoch: Opacus's ``int(1 / sample_rate)``."""
        return int(1 / self.sample_rate)

    def statement(self) -> PrivacyStatement:
        """What each client spends: R · E · ⌊1/q⌋ Poisson-subsampled Gaussian steps."""
        budget = self.budget
        steps = self.rounds * self.local_epochs * self.steps_per_epoch
        z = noise_multiplier(budget.epsilon, budget.delta, sample_rate=self.sample_rate, steps=steps, accountant=budget.accountant)
        return PrivacyStatement(budget, (Release("dp-sgd", z, self.sample_rate, steps),))

    def run_server(self, comm: Communicator) -> ServerResult:
        """FedAvg's rounds; the result's ``info.privacy`` holds each client's statement (the same
        for every client: the steps and noise do not depend on its data)."""
        result = super().run_server(comm)
        statement = self.statement().to_record()
        result.info["privacy"] = {str(node): statement for node in comm.nodes()}
        return result

    def train(self, content: RecordDict, data: ClientPartition, state: dict[str, np.ndarray]) -> RecordDict:
        """``local_epochs`` epochs of DP-SGD from the received θ (0 in round 1); reply θ_k and
        ``num-examples`` = 1 (equal weights: N stays private)."""
        from opacus import GradSampleModule
        from opacus.data_loader import DPDataLoader
        from opacus.optimizers import DPOptimizer

        config, arrays = config_of(content), arrays_of(content)
        train = data.train
        a = self.model.design(train.x, train.s)
        n = self.model.paper_n(train.num_features)
        module = torch.nn.Linear(a.shape[1], 1, bias=False, dtype=torch.float64)
        with torch.no_grad():
            start = arrays.get(THETA)
            module.weight.copy_(torch.zeros(1, a.shape[1]) if start is None else torch.as_tensor(start).reshape(1, -1))
        model = GradSampleModule(module)
        generator = self.budget.noise_generator(data.client_id)
        optimizer = DPOptimizer(
            torch.optim.SGD(model.parameters(), lr=float(config["lr"]), weight_decay=self.lambda_theta / (n * n)),
            noise_multiplier=self.statement().releases[0].noise_multiplier,
            max_grad_norm=self.budget.clip,
            expected_batch_size=int(config["batch-size"]),
            generator=generator,
        )
        loader = DPDataLoader(torch.utils.data.TensorDataset(a, train.y), sample_rate=self.sample_rate, generator=generator)
        with warnings.catch_warnings():
            # Opacus's per-example hooks fire on the module's output (its inputs need no gradient)
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            for _ in range(int(config["local-epochs"])):
                for rows, labels in loader:
                    optimizer.zero_grad(set_to_none=True)
                    if len(rows):
                        F.softplus(-model(rows).squeeze(1) * labels).mean().backward()
                    else:
                        _empty_step(model)
                    optimizer.step()
        theta = module.weight.detach().reshape(-1).numpy().copy()
        if not np.isfinite(theta).all():
            raise FloatingPointError("DP-SGD produced a non-finite θ; lower lr")
        return make_content(arrays={THETA: theta}, metrics={NUM_EXAMPLES: 1.0})


def _empty_step(model: torch.nn.Module) -> None:
    """An empty Poisson sample: zero per-example gradients, so the step adds the noise alone."""
    for parameter in model.parameters():
        parameter.grad_sample = torch.zeros(0, *parameter.shape, dtype=parameter.dtype)

