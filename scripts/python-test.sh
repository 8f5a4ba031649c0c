#!/usr/bin/env bash
# Builds and installs the Python package into a virtual environment (`pip install .`, with
# scikit-build-core, nanobind and pytest from PyPI), then runs the binding tests in
# tests/python. Exits non-zero on any failure, and when pytest collects no test at all.
#   PYTHON=python3             the interpreter the venv is made from
#   KVOFFLOAD_VENV=build-py/venv  where the venv lives (reused, recreated when broken)
#   KVOFFLOAD_REPLAY=...       the kvoffload-replay binary the replay test compares with
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

python="${PYTHON:-python3}"
venv="${KVOFFLOAD_VENV:-build-py/venv}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
  echo "kvoffload: the Python tests need Python >= 3.9 as '$python' (set PYTHON=...)" >&2
  exit 1
fi
# A venv whose interpreter went away (another Python, a moved tree) is made anew.
if [ -d "$venv" ] && ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
  echo "kvoffload: $venv is broken; recreating it"
  rm -rf "$venv"
fi
if [ ! -x "$venv/bin/python" ]; then
  mkdir -p "$(dirname "$venv")"
  if ! "$python" -m venv "$venv"; then
    rm -rf "$venv"
    echo "kvoffload: '$python -m venv' failed; on Debian: apt-get install python3-venv" >&2
    exit 1
  fi
fi
echo "kvoffload: venv $venv ($("$venv/bin/python" --version))"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
"$venv/bin/python" -m pip install -q "scikit-build-core>=0.10" "nanobind>=2.2" "pytest>=7"
# No build isolation: the build uses the venv's scikit-build-core and nanobind, and its CMake
# tree (build-py/skbuild/) is reused by the next run.
"$venv/bin/python" -m pip install -q --no-build-isolation .

set +e
# The vLLM tests need vLLM: scripts/vllm-test.sh runs them in its own venv (here they would skip).
"$venv/bin/python" -m pytest -p no:cacheprovider -q tests/python \
  --ignore=tests/python/test_vllm_policy.py --ignore=tests/python/test_vllm_disk_tier.py \
  --ignore=tests/python/test_vllm_worker.py "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "kvoffload: pytest collected no tests in tests/python: that is a failure" >&2
  exit 1
fi
exit "$status"
