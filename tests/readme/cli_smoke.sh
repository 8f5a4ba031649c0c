#!/usr/bin/env bash
# cli_smoke.sh BUILD_DIR: what a new user types first. --help exits 0 with a usage text; bad
# arguments exit non-zero before any table is printed, with a message that names the value and
# carries no internal source location (--debug shows it).
set -uo pipefail
build=$1
failures=0
check() {  # check NAME WANT_RC STDOUT_MUST_BE_EMPTY(0/1) STDERR_PATTERN -- command...
  local name=$1 want=$2 quiet=$3 pattern=$4
  shift 5
  local out err rc
  out=$("$@" 2>/tmp/cli_smoke_err.$$)
  rc=$?
  err=$(cat /tmp/cli_smoke_err.$$)
  rm -f /tmp/cli_smoke_err.$$
  local why=""
  [ "$rc" -eq "$want" ] || why+=" exit $rc, want $want;"
  [ "$quiet" = 0 ] || [ -z "$out" ] || why+=" printed to stdout before failing: ${out:0:200};"
  [ -z "$pattern" ] || grep -qE -- "$pattern" <<<"$out$err" || why+=" no /$pattern/ in: ${err:0:300};"
  if grep -qE '\((csrc|include|bench|kernels)/[^ ]+:[0-9]+\)' <<<"$err" && [[ "$name" != *debug* ]]; then
    why+=" a source location in: ${err:0:300};"
  fi
  if [ -n "$why" ]; then
    echo "FAIL $name:$why"
    failures=$((failures + 1))
  else
    echo "ok   $name"
  fi
}
replay=$build/bench/kvoffload-replay
footprint=$build/bench/kvoffload-footprint
bench=$build/bench/transfer/kvoffload-bench

check replay_help 0 0 "usage: kvoffload-replay" -- "$replay" --help
check replay_empty_policy 2 1 "--policy '' names no policy" -- "$replay" --policy ''
check replay_capacity_above_100 2 1 "'150%' is above 100%" -- "$replay" --capacity 150%
check replay_bad_spec 2 1 "unknown policy 'nope'" -- "$replay" --policy nope
check replay_bad_spec_debug 2 1 "\(csrc/policy/factory.cpp:[0-9]+\)" -- "$replay" --debug --policy nope
check replay_spec_too_big 2 1 "" -- "$replay" --policy 'tiered:hot=5000' --capacity 1000
check replay_unknown_option 2 1 "unknown option '--bogus'" -- "$replay" --bogus
check replay_missing_trace 2 1 "/nonexistent.jsonl" -- "$replay" --trace /nonexistent.jsonl
check footprint_help 0 0 "usage: kvoffload-footprint" -- "$footprint" --help
check footprint_bad_spec 2 1 "unknown policy 'nope'" -- "$footprint" --policy nope
if [ -x "$bench" ]; then
  check bench_help 0 0 "usage:" -- "$bench" --help
  check bench_no_subcommand 2 0 "usage:" -- "$bench"
fi
exit $((failures > 0))
