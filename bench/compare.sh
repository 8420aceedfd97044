#!/usr/bin/env bash
# Times slm and llama.cpp's llama-bench on the same synthetic GGUF files in one
# run and prints the ratios (slm / llama.cpp).
#   bench/compare.sh LLAMA_CPP_BUILD_DIR [SHAPE:TYPE ...]
# With --slm OTHER_SLM instead, the other program is a second slm build (the
# ratios are then slm / OTHER_SLM: a refactor's before and after, side by side).
#   bench/compare.sh --slm OTHER_SLM [SHAPE:TYPE ...]
# Environment: SLM (the slm binary, default build/src/cli/slm), THREADS (2),
# PP (512), TG (128), REPS (3), ROUNDS (3), SYNTH_DIR (where synthetic files
# are cached).
#
# A shared or turbo-boosting machine drifts by 10-30% within minutes, so the
# two programs alternate: each round times slm then llama.cpp (REPS
# repetitions each), a ratio is taken per round, and the table gives the
# median of the rounds' ratios with their range, next to the mean speeds.
set -euo pipefail
usage="usage: bench/compare.sh (LLAMA_CPP_BUILD_DIR | --slm OTHER_SLM) [SHAPE:TYPE ...]"
other_slm=""
if [ "${1:-}" = "--slm" ]; then
  other_slm=$(realpath "${2:?$usage}")
  shift 2
else
  llama_build=${1:?$usage}
  shift
fi
cd "$(dirname "$0")/.."
slm=${SLM:-build/src/cli/slm}
threads=${THREADS:-2}
pp=${PP:-512}
tg=${TG:-128}
reps=${REPS:-3}
rounds=${ROUNDS:-3}
synth_dir=${SYNTH_DIR:-/tmp/slm-synth}
if [ -z "$other_slm" ]; then
  llama_bench=$(find "$llama_build" -name llama-bench -type f -perm -u+x | head -n 1)
  [ -x "$llama_bench" ] || { echo "no llama-bench under $llama_build" >&2; exit 1; }
fi
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(qwen2.5-0.5b:Q4_0 qwen2.5-0.5b:Q8_0 qwen2.5-0.5b:Q4_K_M qwen2.5-0.5b:F16
                                 tinyllama-1.1b:Q4_0 tinyllama-1.1b:Q8_0 tinyllama-1.1b:Q4_K_M moe-1.3b:Q4_0 moe-1.3b:Q4_K_M)
mkdir -p "$synth_dir"
bw=$("$slm" bench --bandwidth -t "$threads" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["bandwidth_gbs"])')
echo "measured read bandwidth, $threads threads: $bw GB/s; $rounds alternating rounds of $reps repetitions"
other=llama
[ -n "$other_slm" ] && other=other
printf '%-16s %-7s %8s %8s %-16s %7s %7s %-16s %7s\n' shape type "slm pp" "$other pp" "ratio (range)" \
  "slm tg" "$other tg" "ratio (range)" "slm bw%"
for c in "${cases[@]}"; do
  shape=${c%%:*}
  type=${c##*:}
  f="$synth_dir/$shape-$type.gguf"
  [ -f "$f" ] || "$slm" synth --shape "$shape" --type "$type" -o "$f" -t "$threads" 2>/dev/null
  runs=()
  for ((i = 0; i < rounds; i++)); do
    runs+=("$("$slm" bench -m "$f" -t "$threads" --n-prompt "$pp" -n "$tg" -r "$reps" --bandwidth-gbs "$bw" --json)")
    if [ -n "$other_slm" ]; then
      runs+=("$("$other_slm" bench -m "$f" -t "$threads" --n-prompt "$pp" -n "$tg" -r "$reps" --bandwidth-gbs "$bw" --json)")
    else
      runs+=("$("$llama_bench" -m "$f" -t "$threads" -p "$pp" -n "$tg" -r "$reps" -o json 2>/dev/null || echo '[]')")
    fi
  done
  python3 - "$shape" "$type" "${runs[@]}" <<'PY'
import json, statistics, sys
def parse(text):
    # llama-bench can abort half way (its repacked Q4_0 MoE path), leaving
    # partial JSON: that run counts as no result.
    try:
        return json.loads(text)
    except ValueError:
        return []
shape, typ, runs = sys.argv[1], sys.argv[2], [parse(a) for a in sys.argv[3:]]
nan = float("nan")
def llama(l, prompt):
    if isinstance(l, dict):  # a second slm build's bench --json
        return l["pp" if prompt else "tg"]["tps_mean"]
    key = "n_prompt" if prompt else "n_gen"
    other = "n_gen" if prompt else "n_prompt"
    return next((r["avg_ts"] for r in l if r.get(key, 0) > 0 and r.get(other, 0) == 0), nan)
rows = []
for s, l in zip(runs[0::2], runs[1::2]):
    rows.append((s["pp"]["tps_mean"], llama(l, True), s["tg"]["tps_mean"], llama(l, False),
                 s["tg_fraction_of_bandwidth"]))
def col(i): return [r[i] for r in rows]
def ratio(a, b):
    rs = [x / y for x, y in zip(a, b) if y == y and y > 0]
    if not rs: return "-"
    return f"{statistics.median(rs):.2f} ({min(rs):.2f}-{max(rs):.2f})"
mean = lambda v: sum(v) / len(v)
print(f"{shape:16s} {typ:7s} {mean(col(0)):8.1f} {mean(col(1)):8.1f} {ratio(col(0), col(1)):16s} "
      f"{mean(col(2)):7.1f} {mean(col(3)):7.1f} {ratio(col(2), col(3)):16s} {100 * mean(col(4)):6.0f}%")
PY
done
