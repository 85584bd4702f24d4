"""How a client shows its outer iterations, chosen by the environment (no torch, so the Hydra
callbacks can set it from the ``fedsynth`` process).

``FEDSYNTH_PROGRESS`` (:data:`PROGRESS_ENV`): ``bar`` (tqdm), ``log`` (a line every 10%), ``off``;
unset or ``auto``: a bar when stderr is a terminal, else log lines.
"""

PROGRESS_ENV = "FEDSYNTH_PROGRESS"
