#!/usr/bin/env bash
# extract_readme.sh README OUTDIR: the README's examples as files the tests build and run.
#
# A fenced block is tested when the line before its fence (blank lines skipped) is a marker:
#   <!-- readme-test: NAME -->   ```cpp block -> OUTDIR/NAME.inc, a function body (its #include
#                                lines go to OUTDIR/includes.inc, with #line directives so a
#                                compiler error names README.md and its line)
#   <!-- readme-test: cli -->    ```bash block -> one line of OUTDIR/cli_commands.txt per command
#   <!-- readme-untested: WHY --> the block is deliberately left out
# Every ```cpp block needs one of them: OUTDIR/problems.txt lists the ones without (the
# readme_markers test fails on it). OUTDIR/snippets.txt lists the names extracted.
set -euo pipefail
readme=$1
final=$2
# Written beside, then copied where changed: an unchanged README rebuilds nothing.
out=$(mktemp -d "${final%/}.XXXXXX")
trap 'rm -rf "$out"' EXIT
: >"$out/includes.inc"
: >"$out/cli_commands.txt"
: >"$out/problems.txt"
: >"$out/snippets.txt"

awk -v out="$out" -v readme="$readme" '
  /^<!-- readme-test: [A-Za-z0-9_]+( .*)? -->$/ && !in_block {
    marker = $3; next
  }
  /^<!-- readme-untested: .* -->$/ && !in_block { marker = "-"; next }
  /^```/ && !in_block {
    in_block = 1; lang = substr($0, 4); name = marker; marker = ""
    if (lang == "cpp" && name == "")
      printf "README.md line %d: a ```cpp block without a readme-test or readme-untested marker\n", NR >> (out "/problems.txt")
    if (lang == "cpp" && name != "" && name != "-" && name != "cli") {
      file = out "/" name ".inc"
      print name >> (out "/snippets.txt")
      printf "#line %d \"%s\"\n", NR + 1, readme > file
    } else {
      file = ""
    }
    if (lang != "bash" && name == "cli")
      printf "README.md line %d: readme-test: cli marks a ```%s block, not ```bash\n", NR, lang >> (out "/problems.txt")
    cli = (lang == "bash" && name == "cli")
    next
  }
  /^```$/ && in_block { in_block = 0; file = ""; cli = 0; next }
  in_block && file != "" {
    if ($0 ~ /^#include /) {
      printf "#line %d \"%s\"\n%s\n", NR, readme, $0 >> (out "/includes.inc")
      print "" > file   # keep the line numbers of the body
    } else {
      print > file
    }
    next
  }
  in_block && cli {
    line = $0
    sub(/[ \t]+#.*$/, "", line)  # a trailing comment
    if (line ~ /^[ \t]*$/ || line ~ /^[ \t]*#/) next
    print line >> (out "/cli_commands.txt")
    next
  }
  !in_block && $0 !~ /^[ \t]*$/ { marker = "" }
' "$readme"

mkdir -p "$final"
for f in "$final"/*; do
  if [ -e "$f" ] && [ ! -e "$out/$(basename "$f")" ]; then rm -f "$f"; fi
done
for f in "$out"/*; do
  if ! cmp -s "$f" "$final/$(basename "$f")"; then cp "$f" "$final/"; fi
done
