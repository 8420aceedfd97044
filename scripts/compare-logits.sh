#!/usr/bin/env bash
# Checks that two slm builds give bit-identical logits: for every reference
# prompt in the fixtures (prompt + greedy tokens fed as one sequence, as the
# reference tests do), on every instruction-set path this CPU runs, at 1 and 2
# threads, `slm logits --out` of OLD and NEW must be the same bytes.
# Used around refactors that must not change a single bit ("behaviour is
# unchanged"). Prints one line per case and a closing count; exits 1 on any
# difference.
#   scripts/compare-logits.sh OLD_SLM NEW_SLM [FIXTURES_DIR]
set -euo pipefail
old=$1
new=$2
fx=${3:-${SLM_FIXTURES:-$(dirname "$0")/../../shared/fixtures}}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

isas=(scalar)
grep -qw avx2 /proc/cpuinfo && isas+=(avx2)
grep -qw avx512_vnni /proc/cpuinfo && isas+=(avx512)
grep -qw asimd /proc/cpuinfo && isas+=(neon)

tokens_of() {  # the numbers of one JSON array key, space-separated
  tr -d '\n' <"$1" | sed -n "s/.*\"$2\": *\[\([^]]*\)\].*/\1/p" | tr -d ' ' | tr ',' ' '
}

pass=0 fail=0 skipped=0
for json in "$fx"/reference/*.json "$fx"/reference-families/*.json; do
  [ -f "$json" ] || continue
  base=$(basename "$json" .json)
  model="$fx/models/${base%.*}.gguf"
  toks="$(tokens_of "$json" prompt_tokens) $(tokens_of "$json" greedy_tokens)"
  for isa in "${isas[@]}"; do
    for t in 1 2; do
      if ! SLM_ISA=$isa "$old" logits --model "$model" --tokens "$toks" -t $t --out "$tmp/old" >/dev/null 2>&1; then
        skipped=$((skipped + 1))  # a family OLD does not run yet
        continue
      fi
      SLM_ISA=$isa "$new" logits --model "$model" --tokens "$toks" -t $t --out "$tmp/new" >/dev/null 2>&1 || true
      if cmp -s "$tmp/old" "$tmp/new"; then
        pass=$((pass + 1))
      else
        fail=$((fail + 1))
        echo "DIFFERENT: $base isa=$isa threads=$t"
      fi
    done
  done
done
echo "logits: $pass passed, $fail failed, $skipped skipped (not run by the old build)"
[ "$fail" -eq 0 ]
