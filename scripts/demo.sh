#!/usr/bin/env bash
# The main job: builds kvoffload and replays the bundled Mooncake KV-block trace through every
# policy (hit rate next to LRU and Belady's optimum, block operations per second), then runs the
# transfer benchmark and 3,000 trace requests end to end through an Offloader on whatever moves
# bytes here: the GPU if one is present, else the host engine. It says which. The requests run
# twice: host slots only, then host + disk (a disk tier in a temporary directory, removed at
# exit), with one line comparing the two hit rates.
# One line per stage (build logs go to files); the results are written as JSON and drawn as
# charts (hit rate by capacity, bandwidth by chunk size) under BUILD/demo/.
# Arguments go to kvoffload-replay (e.g. --capacity 5%). KVOFFLOAD_BUILD_DIR picks the build
# directory (default: build).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${KVOFFLOAD_BUILD_DIR:-build}
results=$build/demo
stages=9
stage_number=0
stage_start=$SECONDS
demo_start=$SECONDS

stage() {  # stage TITLE: starts the next stage's line
  stage_number=$((stage_number + 1))
  stage_start=$SECONDS
  printf '[%d/%d] %s: ' "$stage_number" "$stages" "$1"
}
done_stage() {  # done_stage [TEXT]: ends it, with its time
  printf '%s(%ds)\n' "${1:+$1 }" $((SECONDS - stage_start))
}
output_stage() {  # output_stage TITLE: a stage whose tool prints its results below the line
  stage "$1"
  echo
}
done_output_stage() {  # done_output_stage TEXT: the closing line of an output_stage
  printf '[%d/%d] done: ' "$stage_number" "$stages"
  done_stage "$1"
}
json_number() {  # json_number FILE KEY: the number KEY has in the one-line JSON object FILE
  sed -n "s/.*\"$2\": \([0-9.eE+-]*\).*/\1/p" "$1"
}
json_text() {  # json_text FILE KEY: the string KEY has there
  sed -n "s/.*\"$2\": \"\([^\"]*\)\".*/\1/p" "$1"
}
fail_with_log() {  # fail_with_log LOG: the end of a failed step's log, then exit
  printf 'FAILED; the end of %s:\n' "$1"
  tail -n 40 "$1"
  exit 1
}
# Reads ninja's "[k/N] ..." lines and prints 25%, 50%, ... on the current line as they pass.
progress() {
  local next=25 line done total
  while IFS= read -r line; do
    if [[ $line =~ ^\[([0-9]+)/([0-9]+)\] ]]; then
      done=${BASH_REMATCH[1]} total=${BASH_REMATCH[2]}
      while ((total > 0 && done * 100 >= next * total && next <= 100)); do
        printf '%d%% ' "$next"
        next=$((next + 25))
      done
    elif [[ $line == *"no work to do"* ]]; then
      printf 'up to date '
    fi
  done
}

stage "dependencies"
scripts/install-deps.sh >"${TMPDIR:-/tmp}/kvoffload-deps.log" 2>&1 ||
  fail_with_log "${TMPDIR:-/tmp}/kvoffload-deps.log"
done_stage "present"
source scripts/env.sh
mkdir -p "$build" "$results"

stage "configure $build/"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVOFFLOAD_BUILD_BENCH=ON \
  >"$build/demo-configure.log" 2>&1 || fail_with_log "$build/demo-configure.log"
done_stage "done"

targets=(kvoffload-replay)
grep -q '^kvoffload-bench:' <(cmake --build "$build" --target help 2>/dev/null | sed 's/ .*//') &&
  targets+=(kvoffload-bench)
stage "build ${targets[*]} (log: $build/demo-build.log)"
if ! cmake --build "$build" -j"$JOBS" --target "${targets[@]}" 2>&1 | tee "$build/demo-build.log" |
  progress; then
  fail_with_log "$build/demo-build.log"
fi
done_stage

stage "device"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  done_stage "GPU: $(nvidia-smi -L | head -1)"
else
  done_stage "no GPU on this machine: policies run on the CPU (as always) and byte transfers use the host engine (memcpy between host buffers)"
fi

output_stage "trace replay through every policy (a row per policy and capacity as it finishes)"
"$build/bench/kvoffload-replay" --json "$results/replay.json" "$@"
done_output_stage "wrote $results/replay.json"

if [ -x "$build/bench/transfer/kvoffload-bench" ]; then
  output_stage "transfer benchmark (--quick)"
  "$build/bench/transfer/kvoffload-bench" transfer --quick --json "$results/transfer.json"
  done_output_stage "wrote $results/transfer.json"

  output_stage "3,000 trace requests through an Offloader (--quick)"
  "$build/bench/transfer/kvoffload-bench" offload --quick --json "$results/offload.json"
  done_output_stage "wrote $results/offload.json"

  # Buffered I/O keeps the stage short (dev VM, 2 vCPU, 2026-12-01: 6.6 s of replay wall time
  # against 23.7 s with O_DIRECT); which blocks hit does not depend on it (0.2573 both).
  disk_dir=$(mktemp -d "${TMPDIR:-/tmp}/kvoffload-demo-disk.XXXXXX")
  trap 'rm -rf "$disk_dir"' EXIT
  output_stage "the same requests through a host + disk Offloader (--quick, disk tier in $disk_dir)"
  "$build/bench/transfer/kvoffload-bench" offload --quick --disk "$disk_dir" --disk-buffered \
    --json "$results/offload_disk.json"
  rm -rf "$disk_dir"
  host=$results/offload.json disk=$results/offload_disk.json
  host_rate=$(awk -v l="$(json_number "$host" blocks_loaded)" -v r="$(json_number "$host" references)" \
    'BEGIN { printf "%.4f", l / r }')
  disk_rate=$(awk -v h="$(json_number "$disk" hit_rate)" 'BEGIN { printf "%.4f", h }')
  printf 'hit rate: host only %s (%s, %s host slots); host + disk %s (%s, + %s disk slots; %s of its %s hits came up from disk)\n' \
    "$host_rate" "$(json_text "$host" policy)" "$(json_number "$host" slots)" "$disk_rate" \
    "$(json_text "$disk" policy)" "$(json_number "$disk" disk_slots)" \
    "$(json_number "$disk" disk_hits)" "$(json_number "$disk" blocks_loaded)"
  done_output_stage "wrote $results/offload_disk.json"
else
  stage "transfer benchmark"
  done_stage "skipped: kvoffload-bench is not built"
  stage "Offloader run"
  done_stage "skipped: kvoffload-bench is not built"
  stage "host + disk Offloader run"
  done_stage "skipped: kvoffload-bench is not built"
fi

stage "charts"
python=""
for candidate in python3 /usr/bin/python3; do  # Debian's matplotlib is for the system Python
  if "$candidate" -c 'import matplotlib' 2>/dev/null; then
    python=$candidate
    break
  fi
done
if [ -n "$python" ]; then
  charts=()
  "$python" bench/plot_replay.py "$results/replay.json" "$results/hit_rate.png" >/dev/null &&
    charts+=("$results/hit_rate.png")
  if [ -f "$results/transfer.json" ]; then
    "$python" bench/plot_transfer.py "$results/transfer.json" "$results/bandwidth.png" \
      >/dev/null && charts+=("$results/bandwidth.png")
  fi
  done_stage "${charts[*]}"
else
  done_stage "skipped: python3 with matplotlib is missing (Debian: apt-get install python3-matplotlib)"
fi
echo "kvoffload demo: done in $((SECONDS - demo_start))s; results in $results/"
