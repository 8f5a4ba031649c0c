#!/usr/bin/env bash
# Runs the vLLM integration tests (tests/python/test_vllm_*.py: the eviction policies, the disk
# tier, the experimental worker) against the real vllm==0.33.0: reuses the cached venv
# (installing vLLM and the torch it pins only when `import vllm` fails there), installs this
# package into it, runs pytest. Exits non-zero on any failure, when vLLM is not 0.33.0, and when
# pytest collects or runs no test (a skipped module counts as a failure here: this script exists
# so that it never skips).
#   PYTHON=python3                                  the interpreter the venv is made from
#   KVOFFLOAD_VLLM_VENV=$HOME/.cache/kvoffload-vllm-venv  the cached venv
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

python="${PYTHON:-python3}"
venv="${KVOFFLOAD_VLLM_VENV:-$HOME/.cache/kvoffload-vllm-venv}"
vllm_version=0.33.0
if [ -d "$venv" ] && ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
  echo "kvoffload: $venv is broken; recreating it"
  rm -rf "$venv"
fi
if [ ! -x "$venv/bin/python" ]; then
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv" || {
    rm -rf "$venv"
    echo "kvoffload: '$python -m venv' failed; on Debian: apt-get install python3-venv" >&2
    exit 1
  }
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
if ! "$venv/bin/python" -c 'import vllm' >/dev/null 2>&1; then
  echo "kvoffload: installing vllm==$vllm_version into $venv (once; it is large)"
  "$venv/bin/python" -m pip install -q "vllm==$vllm_version"
fi
installed="$("$venv/bin/python" -c 'import vllm; print(vllm.__version__)' 2>/dev/null | tail -1)"
if [ "$installed" != "$vllm_version" ]; then
  echo "kvoffload: $venv has vLLM '$installed', the tests pin $vllm_version" >&2
  exit 1
fi
echo "kvoffload: venv $venv (vLLM $installed)"
"$venv/bin/python" -m pip install -q "scikit-build-core>=0.10" "nanobind>=2.2" "pytest>=7"
# Its own CMake tree (build-vllm/skbuild), so it never races python-test.sh's build-py/.
"$venv/bin/python" -m pip install -q --no-build-isolation -C build-dir=build-vllm/skbuild .

mkdir -p build-vllm
set +e
"$venv/bin/python" -m pytest -p no:cacheprovider -q -rs tests/python/test_vllm_policy.py \
  tests/python/test_vllm_disk_tier.py tests/python/test_vllm_worker.py "$@" \
  | tee build-vllm/pytest.log
status=${PIPESTATUS[0]}
set -e
if [ "$status" -eq 5 ]; then
  echo "kvoffload: pytest collected no vLLM tests: that is a failure" >&2
  exit 1
fi
if [ "$status" -eq 0 ] && grep -q "SKIPPED" build-vllm/pytest.log; then
  echo "kvoffload: vLLM tests were skipped (vLLM not importable?): that is a failure" >&2
  exit 1
fi
exit "$status"
