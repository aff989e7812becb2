#!/usr/bin/env bash
# Cross-checks drivetag's stays and trips against trackintel and movingpandas on the recorded
# drives, and times both stay-point detectors in the same run (see crosscheck.py).
#
#   tools/crosscheck/crosscheck.sh                  # every recording in ../shared/data
#   tools/crosscheck/crosscheck.sh dg100.gpx        # some of them
#   VENV=/tmp/ti DRIVETAG_DATA_DIR=/data tools/crosscheck/crosscheck.sh --runs 20
#
# Needs python3 with venv and pip, and PyPI. The virtualenv is kept between runs
# (${VENV:-$HOME/.venvs/drivetag-crosscheck}); pip only checks the pinned versions after the
# first run. Exit status 1 when a figure is outside the README's tolerances or the speed
# ratio misses 50x.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${VENV:-$HOME/.venvs/drivetag-crosscheck}"
target="${CARGO_TARGET_DIR:-$root/target}"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "crosscheck: creating the virtualenv $venv" >&2
    python3 -m venv "$venv"
fi
# The versions the reference figures were measured with (shared/data/README.md).
"$venv/bin/pip" install --quiet --disable-pip-version-check \
    trackintel==1.4.2 movingpandas==0.23.0 gpxpy==1.6.2

echo "crosscheck: building the agent (release)" >&2
(cd "$root" && cargo build --quiet --release -p drivetag-agent --bin drivetag-agent --example stays_bench)

exec "$venv/bin/python" "$here/crosscheck.py" \
    --agent "$target/release/drivetag-agent" \
    --stays-bench "$target/release/examples/stays_bench" \
    "$@"
