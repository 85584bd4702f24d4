#!/usr/bin/env bash
# Run one fedsynth experiment (the default: built-in synthetic data, the paper's single-shot
# method, Flower's simulation engine). Extra arguments are Hydra overrides, e.g.
#   scripts/run.sh dataset=law_school_race engine=inprocess method.rho_o=100
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/bootstrap.sh"
cd "$root"
exec "${FEDSYNTH_VENV:-$root/.venv}/bin/fedsynth" "$@"
