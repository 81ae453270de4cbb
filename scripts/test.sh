#!/usr/bin/env bash
# Run the whole test suite in the set-up venv. Extra arguments go to pytest (e.g. -k cli, -x).
# Exit code 5 (no tests collected) is a failure here: a suite that runs nothing proves nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "no .venv: run ./scripts/setup.sh first" >&2; exit 2; }
# an isolated DDS domain per run, so parallel runs on one machine do not hear each other
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 100 ))}
.venv/bin/python -m pytest -q "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit $rc
