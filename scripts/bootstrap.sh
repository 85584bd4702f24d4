#!/usr/bin/env bash
# Create or refresh the project's virtual environment (default .venv, or $FEDSYNTH_VENV):
# torch 2.13.0 (CPU wheel) first, then fedsynth with its dev, cluster and dp-synth extras (the cluster extra is
# the SLURM launcher plugin, so its config test runs; dp-synth is the dp_mst baseline's JAX marginal
# inference). Safe to run again: it does
# nothing when pyproject.toml has not changed since the last successful install.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FEDSYNTH_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
stamp="$venv/.fedsynth-installed"
wanted="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
  exit 0
fi
started=$SECONDS
step() { echo "fedsynth: [$1/3] $2 ($((SECONDS - started)) s so far)" >&2; }
echo "fedsynth: setting up $venv (one time, about two minutes; pip's own output is kept quiet)" >&2
step 1 "a virtual environment and a current pip"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
# The pinned CPU build first: an unpinned torch would pull a multi-GB CUDA build.
step 2 "torch 2.13.0, the CPU build"
"$venv/bin/python" -m pip install --quiet "torch==2.13.0"
step 3 "fedsynth and its dependencies (Flower, Hydra, Opacus, JAX for dp_mst, pytest)"
"$venv/bin/python" -m pip install --quiet -e "$root[dev,cluster,dp-synth]"
# An environment set up by an older fedsynth may hold its settings hook; nothing needs it now.
rm -f "$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/fedsynth-flower-env.pth"
echo "$wanted" > "$stamp"
echo "fedsynth: environment ready in $((SECONDS - started)) s" >&2
