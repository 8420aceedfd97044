#!/usr/bin/env bash
# Speculative decoding, single stream: generation tokens/s of slm run with and
# without drafting on the same prompt (greedy by default), alternating in each round; prints
# the median of the rounds' ratios (drafted / plain) and the acceptance rate.
#   bench/spec_bench.sh MODEL PROMPT_FILE [DRAFT_ARGS...]
# DRAFT_ARGS default to --draft ngram. Environment: SLM (binary, default
# build/src/cli/slm), THREADS (2), N (tokens generated, 128), CTX (context, 0:
# the model's), ROUNDS (5), TEMP (0: greedy; else sampled with SEED, 1).
set -euo pipefail
usage="usage: bench/spec_bench.sh MODEL PROMPT_FILE [DRAFT_ARGS...]"
model=${1:?$usage}
prompt=${2:?$usage}
shift 2
draft=("$@")
[ ${#draft[@]} -gt 0 ] || draft=(--draft ngram)
slm=${SLM:-$(dirname "$0")/../build/src/cli/slm}
threads=${THREADS:-2}
n=${N:-128}
ctx=${CTX:-0}
rounds=${ROUNDS:-5}
temp=${TEMP:-0}
seed=${SEED:-1}
once() {  # prints "tok/s drafted accepted"
  "$slm" run "$model" -f "$prompt" -n "$n" -c "$ctx" --temp "$temp" -s "$seed" -t "$threads" --json "$@" 2>/dev/null |
    python3 -c 'import json,sys
j=json.load(sys.stdin); s=j.get("speculative",{})
print(j["usage"]["completion_tokens"]/j["timings"]["generation_ms"]*1000, s.get("drafted",0), s.get("accepted",0))'
}
results=()
for r in $(seq "$rounds"); do
  if [ $((r % 2)) -eq 1 ]; then a=$(once); b=$(once "${draft[@]}"); else b=$(once "${draft[@]}"); a=$(once); fi
  results+=("$a $b")
done
printf '%s\n' "${results[@]}" | python3 -c '
import sys, statistics as st
rows=[list(map(float,l.split())) for l in sys.stdin if l.strip()]
plain=[r[0] for r in rows]; spec=[r[3] for r in rows]; ratio=[r[3]/r[0] for r in rows]
d=sum(r[4] for r in rows); a=sum(r[5] for r in rows)
print("plain %.1f tok/s, drafted %.1f tok/s (medians), ratio %.3f [%.3f..%.3f], acceptance %s" % (
  st.median(plain), st.median(spec), st.median(ratio), min(ratio), max(ratio),
  "%.0f/%.0f = %.2f" % (a, d, a/d) if d else "no drafts"))'
