#!/usr/bin/env python3
"""KL of a quantized KV cache against an f32 one on the fixtures' reference prompts.

For every reference in $SLM_FIXTURES/reference (prompt and greedy tokens, as
tests/model/test_reference_logits.cpp feeds them), runs `slm logits` with
--kv-type f32, f16 and q8_0 and prints, per model and type, the mean and
largest KL(f32 cache || this cache) over the rows and the argmax flips.
q8_0 needs a head size that is a multiple of 32 (skipped otherwise).
  bench/kv_kl.py [SLM_BINARY]
"""
import array, json, math, os, subprocess, sys, tempfile

slm = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../build/src/cli/slm")
fx = os.environ.get("SLM_FIXTURES", os.path.join(os.path.dirname(__file__), "../../shared/fixtures"))
ref_dir = os.path.join(fx, "reference")


def logits(model, tokens, kv, out):
    cmd = [slm, "logits", model, "--tokens", " ".join(map(str, tokens)), "--out", out, "-t", "2",
           "-c", str(max(len(tokens), 16)), "--allow-long-context", "--kv-type", kv]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return None, r.stderr.strip().splitlines()[-1]
    a = array.array("f")
    with open(out, "rb") as f:
        a.frombytes(f.read())
    return a, None


def log_softmax(row):
    m = max(row)
    s = math.log(sum(math.exp(x - m) for x in row))
    return [x - m - s for x in row]


print("| model | prompt | rows | KV | mean KL vs f32 | max KL | argmax flips |")
print("|---|---|---|---|---|---|---|")
with tempfile.TemporaryDirectory() as tmp:
    for name in sorted(os.listdir(ref_dir)):
        if not name.endswith(".json"):
            continue
        ref = json.load(open(os.path.join(ref_dir, name)))
        model_name, prompt = name[:-5].split(".", 1)
        model = os.path.join(fx, "models", model_name + ".gguf")
        V = ref["n_vocab"]
        tokens = (ref["prompt_tokens"] + ref["greedy_tokens"])[: ref["logits_rows"]]
        base, err = logits(model, tokens, "f32", os.path.join(tmp, "f32"))
        if base is None:
            print(f"| {model_name} | {prompt} | - | f32 | error: {err} | | |")
            continue
        rows = len(base) // V
        p_rows = [log_softmax(base[r * V:(r + 1) * V]) for r in range(rows)]
        for kv in ("f16", "q8_0"):
            other, err = logits(model, tokens, kv, os.path.join(tmp, kv))
            if other is None:
                print(f"| {model_name} | {prompt} | {rows} | {kv} | skipped: {err} | | |")
                continue
            kls, flips = [], 0
            for r in range(rows):
                lp = p_rows[r]
                lq = log_softmax(other[r * V:(r + 1) * V])
                kls.append(sum(math.exp(a) * (a - b) for a, b in zip(lp, lq)))
                flips += max(range(V), key=lp.__getitem__) != max(range(V), key=lq.__getitem__)
            print(f"| {model_name} | {prompt} | {rows} | {kv} | {sum(kls) / rows:.2e} | {max(kls):.2e} | {flips} |")
