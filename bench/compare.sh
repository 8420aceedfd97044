#!/usr/bin/env bash
# Times slm and llama.cpp's llama-bench on the same synthetic GGUF files in one
# run and prints the ratios (slm / llama.cpp).
#   bench/compare.sh LLAMA_CPP_BUILD_DIR [SHAPE:TYPE ...]
# Environment: SLM (the slm binary, default build/src/cli/slm), THREADS (2),
# PP (512), TG (128), REPS (3), SYNTH_DIR (where synthetic files are cached).
set -euo pipefail
llama_build=${1:?usage: bench/compare.sh LLAMA_CPP_BUILD_DIR [SHAPE:TYPE ...]}
shift
cd "$(dirname "$0")/.."
slm=${SLM:-build/src/cli/slm}
threads=${THREADS:-2}
pp=${PP:-512}
tg=${TG:-128}
reps=${REPS:-3}
synth_dir=${SYNTH_DIR:-/tmp/slm-synth}
llama_bench=$(find "$llama_build" -name llama-bench -type f -perm -u+x | head -n 1)
[ -x "$llama_bench" ] || { echo "no llama-bench under $llama_build" >&2; exit 1; }
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(qwen2.5-0.5b:Q4_0 qwen2.5-0.5b:Q8_0 qwen2.5-0.5b:Q4_K_M qwen2.5-0.5b:F16
                                 tinyllama-1.1b:Q4_0 tinyllama-1.1b:Q8_0 tinyllama-1.1b:Q4_K_M moe-1.3b:Q4_0 moe-1.3b:Q4_K_M)
mkdir -p "$synth_dir"
bw=$("$slm" bench --bandwidth -t "$threads" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["bandwidth_gbs"])')
echo "measured read bandwidth, $threads threads: $bw GB/s"
printf '%-16s %-7s %9s %9s %6s %8s %8s %6s %7s\n' shape type "slm pp" "llama pp" ratio "slm tg" "llama tg" ratio "slm bw%"
for c in "${cases[@]}"; do
  shape=${c%%:*}
  type=${c##*:}
  f="$synth_dir/$shape-$type.gguf"
  [ -f "$f" ] || "$slm" synth --shape "$shape" --type "$type" -o "$f" -t "$threads" 2>/dev/null
  s=$("$slm" bench -m "$f" -t "$threads" -p "$pp" -n "$tg" -r "$reps" --bandwidth-gbs "$bw" --json)
  l=$("$llama_bench" -m "$f" -t "$threads" -p "$pp" -n "$tg" -r "$reps" -o json 2>/dev/null || echo '[]')
  python3 - "$shape" "$type" "$s" "$l" <<'PY'
import json, sys
shape, typ, s, l = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
lpp = next((r["avg_ts"] for r in l if r.get("n_prompt", 0) > 0 and r.get("n_gen", 0) == 0), float("nan"))
ltg = next((r["avg_ts"] for r in l if r.get("n_gen", 0) > 0 and r.get("n_prompt", 0) == 0), float("nan"))
spp, stg = s["pp"]["tps_mean"], s["tg"]["tps_mean"]
r = lambda a, b: a / b if b == b and b > 0 else float("nan")
print(f"{shape:16s} {typ:7s} {spp:9.1f} {lpp:9.1f} {r(spp, lpp):6.2f} {stg:8.1f} {ltg:8.1f} {r(stg, ltg):6.2f} {100 * s['tg_fraction_of_bandwidth']:6.0f}%")
PY
done
