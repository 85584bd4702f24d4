#!/usr/bin/env bash
# Reproduce one of the paper's experiments and write its report (see docs/reproducing.md).
#
#   scripts/reproduce.sh                      # table2: 3 datasets x 5 rho_o x 2 N_s x 3 seeds
#   scripts/reproduce.sh figure2              # Law School (race), rho_o x rho_s, 3 seeds
#   scripts/reproduce.sh figure3              # table2 on a denser rho_o grid
#   scripts/reproduce.sh table2 seed=0 method.k_max=300     # any Hydra overrides narrow / change it
#   JOBS=4 scripts/reproduce.sh table2        # parallel sweep points (default: one per core)
#   ENGINE=simulation scripts/reproduce.sh smoke            # Flower's simulation engine
#
# The sweep goes to multirun/<preset>/<date>/ (one folder per point, each with results.json), then
# the centralized plain reference runs of the same datasets, splits and seeds (+experiment=reference,
# a few seconds each) to multirun/<preset>/<date>/reference/, the report to
# multirun/<preset>/<date>/report/ (report.md, table2.md, CSVs, PNGs). The real
# data come from the data directory (docs/data.md: $FEDSYNTH_DATA_DIR, else ../shared/data beside
# the repository).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
preset="${1:-table2}"
[ "$#" -gt 0 ] && shift
if [ ! -f "$root/conf/experiment/$preset.yaml" ]; then
  echo "unknown preset '$preset'; choose one of: $(cd "$root/conf/experiment" && ls *.yaml | sed 's/\.yaml$//' | tr '\n' ' ')" >&2
  exit 2
fi
"$root/scripts/bootstrap.sh"
venv="${FEDSYNTH_VENV:-$root/.venv}"
jobs="${JOBS:-$("$venv/bin/python" -c 'import joblib; print(joblib.cpu_count())')}"
sweep_dir="$root/multirun/$preset/$(date +%Y-%m-%d_%H-%M-%S)"
engine_override=()
[ -n "${ENGINE:-}" ] && engine_override=("engine=$ENGINE")

cd "$root"
start=$(date +%s)
"$venv/bin/fedsynth" -m "+experiment=$preset" hydra/launcher=parallel "hydra.launcher.n_jobs=$jobs" \
  "hydra.sweep.dir=$sweep_dir" "${engine_override[@]}" "$@"
data_dir=()
for argument in "$@"; do [[ "$argument" == data_dir=* ]] && data_dir=("$argument"); done
read -r -a references <<< "$("$venv/bin/fedsynth-report" --reference-overrides "$sweep_dir")"
"$venv/bin/fedsynth" -m +experiment=reference "${references[@]}" "${data_dir[@]}" "hydra.sweep.dir=$sweep_dir/reference"
end=$(date +%s)
"$venv/bin/fedsynth-report" "$sweep_dir"
echo "sweep: $sweep_dir ($(( (end - start) / 60 )) min $(( (end - start) % 60 )) s wall, $jobs parallel jobs)"
echo "report: $sweep_dir/report/report.md"
