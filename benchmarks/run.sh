#!/bin/sh
# The quick benchmark suite (< 3 minutes): every scenario but the soak, against the
# bare-echo baseline and `smppbridge serve`. Extra arguments go to the runner, e.g.
#   benchmarks/run.sh --json results.json
#   benchmarks/run.sh soak --soak-duration 600 --targets smppbridge
set -eu
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
    set -- all "$@"
fi
exec "$PYTHON" -m smppbridge.bench "$@"
