#!/usr/bin/env bash
# Run the test suite (extra arguments go to pytest). Tests on the real Law School / Dutch files
# read them from the data directory (docs/data.md: $FEDSYNTH_DATA_DIR, else ../shared/data beside
# the repository); without the files they are skipped, and under CI (env CI set) they fail.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/bootstrap.sh"
cd "$root"
exec "${FEDSYNTH_VENV:-$root/.venv}/bin/python" -m pytest "$@"
