#!/usr/bin/env bash
# run_cli_example.sh COMMANDS N BUILD_DIR SOURCE_DIR WORKDIR: runs line N of COMMANDS (a README
# example, extracted by extract_readme.sh) as a user would, with `build/` meaning BUILD_DIR, in
# WORKDIR, where the README's placeholder my_trace.jsonl is the first 500 requests of the
# bundled trace. Passes when the command exits 0 and prints no error.
set -euo pipefail
commands=$1 n=$2 build=$3 source=$4 work=$5
command=$(sed -n "${n}p" "$commands")
[ -n "$command" ] || { echo "no command $n in $commands" >&2; exit 1; }
mkdir -p "$work/$n"
cd "$work/$n"
head -n 500 "$source/data/traces/mooncake/conversation_trace.jsonl" >my_trace.jsonl
command=${command//build\//$build/}
echo "README example: $command"
set +e
bash -c "$command" >stdout.txt 2>stderr.txt
rc=$?
set -e
tail -n 25 stdout.txt
cat stderr.txt >&2
if [ "$rc" -ne 0 ]; then
  echo "FAILED: exit $rc" >&2
  exit 1
fi
if grep -qi "error" stderr.txt; then
  echo "FAILED: it printed an error" >&2
  exit 1
fi
