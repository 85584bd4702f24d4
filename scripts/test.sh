#!/usr/bin/env bash
# Run the test suite (extra arguments go to pytest). Tests on the real Law School / Dutch files
# read them from $FEDSYNTH_DATA_DIR (default: ../shared/data beside the repository, if present);
# without the files they are skipped, and under CI (env CI set) they fail.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/bootstrap.sh"
cd "$root"
if [ -z "${FEDSYNTH_DATA_DIR:-}" ] && [ -d "$root/../shared/data" ]; then
  export FEDSYNTH_DATA_DIR="$(cd "$root/../shared/data" && pwd)"
fi
exec "${FEDSYNTH_VENV:-$root/.venv}/bin/python" -m pytest "$@"
