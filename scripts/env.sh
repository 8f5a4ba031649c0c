# Sourced by the scripts: puts nvcc on PATH and picks the job count.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
JOBS="${JOBS:-$(nproc)}"
export CUDACXX="${CUDACXX:-$(command -v nvcc)}"
