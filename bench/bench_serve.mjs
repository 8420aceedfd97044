#!/usr/bin/env node
// Benchmark of `slm serve` under concurrent streams: aggregate generated
// tokens per second and time to first token at 1, 4 and 8 streams (by
// default), each stream a distinct 128-token prompt followed by 128 generated
// tokens (the shape of llama.cpp's llama-batched-bench runs in
// docs/anchors.md). Starts its own server on a free loopback port.
//
//   node bench/bench_serve.mjs MODEL.gguf [--slm build/src/cli/slm] [--streams 1,4,8]
//        [--prompt-tokens 128] [--gen-tokens 128] [--threads N] [--runs 1] [--json]
//        [--adapters N --rank R] [--usd-per-hour 0.10] [--prefill-chunk N]
//
// --adapters N: serve N random LoRA adapters of rank R (default 16) on all
// seven projections (PEFT folders written to a temporary folder and imported
// with `slm lora import`); stream i uses adapter i mod N.
//
// Needs only Node 20 (no npm packages). Prompts are token ids (so their
// length is exact whatever the vocabulary) and generation ignores end-of-text
// tokens, so every stream produces exactly --gen-tokens tokens.
import { spawn, execFileSync } from "node:child_process";
import os from "node:os";
import path from "node:path";
import fs from "node:fs";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const opts = { slm: process.env.SLM_BIN || path.resolve(here, "../build/src/cli/slm"), streams: "1,4,8",
               "prompt-tokens": "128", "gen-tokens": "128", threads: "", runs: "1", json: false, model: "",
               adapters: "0", rank: "16", "usd-per-hour": "0.10", "prefill-chunk": "" };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === "--json") opts.json = true;
  else if (a === "--help" || a === "-h") { console.log(fs.readFileSync(fileURLToPath(import.meta.url), "utf8").split("\n").slice(1, 12).join("\n")); process.exit(0); }
  else if (a.startsWith("--")) opts[a.slice(2)] = argv[++i];
  else opts.model = a;
}
if (!opts.model) { console.error("usage: node bench/bench_serve.mjs MODEL.gguf [options] (--help)"); process.exit(2); }
const streams = opts.streams.split(",").map(Number);
const promptTokens = Number(opts["prompt-tokens"]), genTokens = Number(opts["gen-tokens"]);
const maxStreams = Math.max(...streams);

// Random PEFT adapters for the model's shapes, imported to GGUF: [name, file].
function makeAdapters(n, r) {
  if (n <= 0) return [];
  const info = execFileSync(opts.slm, ["info", "--model", opts.model, "--no-tensors"], { encoding: "utf8" });
  const m = info.match(/layers:\s+(\d+), n_embd (\d+), heads (\d+) \(kv (\d+)\), head_dim (\d+)/);
  const ff = Number(info.match(/feed-forward:\s+(\d+)/)[1]);
  const [layers, embd, heads, kv, hd] = m.slice(1).map(Number);
  const mods = [["self_attn", "q_proj", embd, heads * hd], ["self_attn", "k_proj", embd, kv * hd],
    ["self_attn", "v_proj", embd, kv * hd], ["self_attn", "o_proj", heads * hd, embd],
    ["mlp", "gate_proj", embd, ff], ["mlp", "up_proj", embd, ff], ["mlp", "down_proj", ff, embd]];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "slm-bench-lora-"));
  process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }));
  const out = [];
  for (let a = 0; a < n; a++) {
    let s = 12345 + a;
    const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5) * 0.02;
    const header = {}, bufs = [];
    let off = 0;
    for (let l = 0; l < layers; l++)
      for (const [parent, mod, nIn, nOut] of mods)
        for (const [ab, shape] of [["A", [r, nIn]], ["B", [nOut, r]]]) {
          const data = Float32Array.from({ length: shape[0] * shape[1] }, next);
          header[`base_model.model.model.layers.${l}.${parent}.${mod}.lora_${ab}.weight`] =
            { dtype: "F32", shape, data_offsets: [off, off + data.byteLength] };
          off += data.byteLength;
          bufs.push(Buffer.from(data.buffer));
        }
    let h = JSON.stringify(header);
    while (h.length % 8) h += " ";
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(h.length));
    const peft = path.join(dir, `peft${a}`);
    fs.mkdirSync(peft);
    fs.writeFileSync(path.join(peft, "adapter_model.safetensors"), Buffer.concat([len, Buffer.from(h), ...bufs]));
    fs.writeFileSync(path.join(peft, "adapter_config.json"),
                     JSON.stringify({ peft_type: "LORA", r, lora_alpha: 2 * r, target_modules: mods.map((x) => x[1]) }));
    const file = path.join(dir, `a${a}.gguf`);
    execFileSync(opts.slm, ["lora", "import", peft, "-o", file, "--model", opts.model], { stdio: "ignore" });
    out.push([`a${a}`, file]);
  }
  return out;
}
const adapters = makeAdapters(Number(opts.adapters), Number(opts.rank));

function startServer() {
  const args = ["serve", "--model", opts.model, "--host", "127.0.0.1", "--port", "0", "--parallel", String(maxStreams),
                "--ctx-size", String(promptTokens + genTokens + 8), "--max-queue", "0"];
  if (opts.threads) args.push("--threads", opts.threads);
  if (opts["prefill-chunk"]) args.push("--prefill-chunk", opts["prefill-chunk"]);
  for (const [name, file] of adapters) args.push("--lora", `${name}=${file}`);
  const proc = spawn(opts.slm, args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "", err = "";
  proc.stdout.on("data", (d) => { out += d; });
  proc.stderr.on("data", (d) => { err += d; });
  process.on("exit", () => proc.kill("SIGKILL"));
  return new Promise((resolve, reject) => {
    proc.stdout.on("data", () => {
      const m = out.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      if (m && /ready:/.test(out)) resolve({ url: m[1], proc, banner: out.trim() });
    });
    proc.on("exit", (c) => reject(new Error(`slm serve exited (${c}):\n${out}\n${err}`)));
  });
}

// A deterministic prompt of n ids in [3, 500): valid for any vocabulary of
// 512 tokens or more, different for every stream so no prefix is shared.
function promptFor(stream, run, n) {
  let x = (stream + 1) * 7919 + run * 104729;
  const ids = [];
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    ids.push(3 + (x % 497));
  }
  return ids;
}

async function oneStream(url, prompt, stream = 0) {
  const t0 = performance.now();
  const r = await fetch(`${url}/v1/completions`, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ ...(adapters.length ? { model: adapters[stream % adapters.length][0] } : {}), prompt, max_tokens: genTokens, temperature: 0, ignore_eos: true, stream: true,
                           stream_options: { include_usage: true } }),
  });
  if (!r.ok) throw new Error(`${r.status} ${await r.text()}`);
  const dec = new TextDecoder();
  let buf = "", tFirst = 0, tokens = 0;
  for await (const part of r.body) {
    buf += dec.decode(part, { stream: true });
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const ev = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      if (!ev.startsWith("data: ") || ev === "data: [DONE]") continue;
      const c = JSON.parse(ev.slice(6));
      if (c.error) throw new Error(c.error.message);
      if (!tFirst && c.choices.length && c.choices[0].text) tFirst = performance.now();
      if (c.usage) tokens = c.usage.completion_tokens;
    }
  }
  const t1 = performance.now();
  return { ttft: (tFirst || t1) - t0, total: t1 - t0, tokens, start: t0, end: t1, first: tFirst || t1 };
}

const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };

const srv = await startServer();
console.error(srv.banner);
await oneStream(srv.url, promptFor(999, 0, 16));  // warm-up: page in the weights
const results = [];
for (const n of streams) {
  for (let run = 0; run < Number(opts.runs); run++) {
    const t0 = performance.now();
    const rs = await Promise.all(Array.from({ length: n }, (_, i) => oneStream(srv.url, promptFor(i, run + n * 10, promptTokens), i)));
    const wall = (performance.now() - t0) / 1000;
    const tokens = rs.reduce((a, r) => a + r.tokens, 0);
    // Generation phase only: from the last first token to the last end, when all streams decode together.
    const lastFirst = Math.max(...rs.map((r) => r.first)), lastEnd = Math.max(...rs.map((r) => r.end));
    const res = {
      streams: n, prompt_tokens: promptTokens, gen_tokens: genTokens, tokens, wall_s: +wall.toFixed(6),
      aggregate_tok_s: +(tokens / wall).toFixed(1),
      per_stream_tok_s: +(rs.reduce((a, r) => a + r.tokens / ((r.end - r.first) / 1000), 0) / n).toFixed(1),
      ttft_ms_mean: +(rs.reduce((a, r) => a + r.ttft, 0) / n).toFixed(1),
      ttft_ms_p50: +pct(rs.map((r) => r.ttft), 0.5).toFixed(1),
      ttft_ms_p99: +pct(rs.map((r) => r.ttft), 0.99).toFixed(1),
      ttft_ms_max: +Math.max(...rs.map((r) => r.ttft)).toFixed(1),
      // The machine's price per generated token, prompt time included: $0.10/h by default (--usd-per-hour).
      // Four significant digits: a tiny model's price is a few thousandths.
      usd_per_mtok: +(Number(opts["usd-per-hour"]) / 3600 / (tokens / wall) * 1e6).toPrecision(4),
      decode_phase_s: +((lastEnd - lastFirst) / 1000).toFixed(3),
    };
    if (rs.some((r) => r.tokens !== genTokens)) throw new Error(`a stream produced the wrong token count: ${JSON.stringify(rs)}`);
    results.push(res);
  }
}
srv.proc.kill("SIGTERM");

if (opts.json) {
  for (const r of results) console.log(JSON.stringify(r));
} else {
  console.log(`model ${path.basename(opts.model)}${adapters.length ? `, ${adapters.length} adapters of rank ${opts.rank}` : ""}, prompt ${promptTokens} + generate ${genTokens} tokens per stream`);
  console.log("streams | aggregate gen tok/s | per-stream tok/s | $/Mtok | TTFT mean / p50 / p99 / max (ms)");
  for (const r of results)
    console.log(`${String(r.streams).padStart(7)} | ${String(r.aggregate_tok_s).padStart(19)} | ${String(r.per_stream_tok_s).padStart(16)} | ${String(r.usd_per_mtok).padStart(6)} | ${r.ttft_ms_mean} / ${r.ttft_ms_p50} / ${r.ttft_ms_p99} / ${r.ttft_ms_max}`);
}
process.exit(0);
