"""fedsynth's Hydra launcher (``hydra/launcher: fedsynth``, the default of conf/config.yaml):
Hydra's basic launcher, the points one after another in this process, with one addition: when
every point of the sweep runs on the simulation engine with the same number of clients, the
launcher, which gets the points as a list up front, hands the whole list to one Flower
simulation (:func:`fedsynth.federated.simulation.shared_simulation`), so Flower and Ray start
once per sweep. Anything else runs exactly as with the basic launcher."""


import contextlib
from dataclasses import dataclass
from typing import Sequence

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn


@dataclass
class FedsynthLauncherConf:
    _target_: str = "hydra_plugins.fedsynth_launcher.FedsynthLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="fedsynth", node=FedsynthLauncherConf, provider="fedsynth")


class FedsynthLauncher(BasicLauncher):
    """The basic launcher, sharing one simulation among a sweep's points (module docstring)."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        with self._shared(job_overrides):
            return super().launch(job_overrides, initial_job_idx)

    def _shared(self, job_overrides: Sequence[Sequence[str]]) -> "contextlib.AbstractContextManager[None]":
        """:func:`~fedsynth.federated.simulation.shared_simulation` of the points, when they all
        run on one simulation engine with the same number of clients; else nothing."""
        from fedsynth import api
        from fedsynth.federated.simulation import SimulationEngine, shared_simulation

        configs = [self.hydra_context.config_loader.load_sweep_config(self.config, list(o)) for o in job_overrides]
        if len(configs) < 2 or any(not str(c.engine._target_).endswith(".SimulationEngine") for c in configs):
            return contextlib.nullcontext()
        engines = [api.engine(config, start=False) for config in configs]
        experiments = [api.check(config) for config in configs]
        shapes = {(e.client_cpus, e.run_timeout_s, int(x.dataset["num_clients"])) for e, x in zip(engines, experiments)}
        if len(shapes) > 1 or not isinstance(engines[0], SimulationEngine):
            return contextlib.nullcontext()
        return shared_simulation(experiments, engines[0])
