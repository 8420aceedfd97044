// LoRA adapters in slm serve through the official OpenAI Node SDK. Four PEFT
// folders (adapter_config.json + adapter_model.safetensors, random weights)
// are written here, imported with `slm lora import` and served with
// --lora NAME=FILE; the SDK picks them by "model". Eight concurrent requests
// over the four adapters and the base give the tokens each gives alone; the
// model list shows the adapters with their parent; unknown names are the
// SDK's NotFoundError; adapters load and unload at run time inside
// --lora-dir only; /metrics counts per adapter; the same mixed batches with
// --lora-type q8.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import OpenAI from "openai";
import { startServer, model, slmBin, requireFile, metric } from "./harness.mjs";

const KEY = "lora-key-0123456789";
const BASE = model("tiny-llama.gguf");
const NAMES = ["de", "es", "fr", "it"];
let srv, client, tmp, loraDir;

// The base's shapes from `slm info`.
function dims() {
  const info = execFileSync(slmBin, ["info", "--model", BASE], { encoding: "utf8" });
  const m = info.match(/layers:\s+(\d+), n_embd (\d+), heads (\d+) \(kv (\d+)\), head_dim (\d+)/);
  const ff = info.match(/feed-forward:\s+(\d+)/);
  assert.ok(m && ff, info);
  const [layers, embd, heads, kv, hd] = m.slice(1).map(Number);
  return { layers, embd, q: heads * hd, kv: kv * hd, ff: Number(ff[1]) };
}

// Deterministic normal-ish values (sum of uniforms from a 32-bit LCG).
function rng(seed) {
  let s = seed >>> 0;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  return () => (u() + u() + u() - 1.5) * 0.6;
}

function writeSafetensors(file, tensors) {
  const header = {};
  let off = 0;
  for (const [name, shape, data] of tensors) {
    header[name] = { dtype: "F32", shape, data_offsets: [off, off + data.byteLength] };
    off += data.byteLength;
  }
  let h = JSON.stringify(header);
  while (h.length % 8) h += " ";
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  fs.writeFileSync(file, Buffer.concat([len, Buffer.from(h), ...tensors.map(([, , d]) => Buffer.from(d.buffer))]));
}

function writePeft(dir, d, seed, r = 4) {
  fs.mkdirSync(dir, { recursive: true });
  const next = rng(seed);
  const mods = [["self_attn", "q_proj", d.embd, d.q], ["self_attn", "k_proj", d.embd, d.kv],
    ["self_attn", "v_proj", d.embd, d.kv], ["self_attn", "o_proj", d.q, d.embd],
    ["mlp", "gate_proj", d.embd, d.ff], ["mlp", "up_proj", d.embd, d.ff], ["mlp", "down_proj", d.ff, d.embd]];
  const tensors = [];
  for (let l = 0; l < d.layers; ++l)
    for (const [parent, mod, nIn, nOut] of mods) {
      const p = `base_model.model.model.layers.${l}.${parent}.${mod}`;
      tensors.push([`${p}.lora_A.weight`, [r, nIn], Float32Array.from({ length: r * nIn }, next)]);
      tensors.push([`${p}.lora_B.weight`, [nOut, r], Float32Array.from({ length: nOut * r }, next)]);
    }
  writeSafetensors(path.join(dir, "adapter_model.safetensors"), tensors);
  fs.writeFileSync(path.join(dir, "adapter_config.json"), JSON.stringify({
    peft_type: "LORA", r, lora_alpha: 2 * r, use_rslora: seed % 2 === 0, bias: "none",
    target_modules: mods.map((m) => m[1]), task_type: "CAUSAL_LM",
  }));
}

before(async () => {
  requireFile(BASE);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "slm-lora-node-"));
  loraDir = path.join(tmp, "adapters");
  fs.mkdirSync(loraDir);
  const d = dims();
  const args = [];
  for (const [i, name] of [...NAMES, "late"].entries()) {
    writePeft(path.join(tmp, `peft-${name}`), d, 17 + i);
    const out = path.join(loraDir, `${name}.gguf`);
    execFileSync(slmBin, ["lora", "import", path.join(tmp, `peft-${name}`), "-o", out, "--model", BASE]);
    if (name !== "late") args.push("--lora", `${name}=${out}`);
  }
  srv = await startServer(["--model", BASE, "--api-key", KEY, "--parallel", "8", "--ctx-size", "256",
    "--lora-dir", loraDir, ...args]);
  client = new OpenAI({ apiKey: KEY, baseURL: `${srv.url}/v1`, maxRetries: 0 });
});

after(async () => {
  await srv?.stop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

const complete = async (m, prompt) =>
  (await client.completions.create({ model: m, prompt, max_tokens: 12, temperature: 0 })).choices[0].text;

test("the model list shows the base and its adapters", async () => {
  const list = await client.models.list();
  assert.deepEqual(list.data.map((m) => m.id), ["tiny-llama", ...NAMES]);
  for (const m of list.data.slice(1)) {
    assert.equal(m.object, "model");
    assert.equal(m.parent, "tiny-llama");
  }
  assert.equal((await client.models.retrieve("fr")).parent, "tiny-llama");
});

test("mixed batches: 8 concurrent requests over 4 adapters and the base equal each alone", async () => {
  const jobs = ["tiny-llama", "de", "es", "fr", "it", "de", "tiny-llama", "fr"].map((m, i) => ({
    m, prompt: `Once upon a time ${["there", "a cat", "in a", "the sun", "we", "my dog", "it", "one"][i]}`,
  }));
  const alone = [];
  for (const j of jobs) alone.push(await complete(j.m, j.prompt));
  const together = await Promise.all(jobs.map((j) => complete(j.m, j.prompt)));
  assert.deepEqual(together, alone);
  // The adapters matter: one prompt, five different answers.
  const per = await Promise.all(["tiny-llama", ...NAMES].map((m) => complete(m, "Once upon a time")));
  assert.equal(new Set(per).size, 5, JSON.stringify(per));
});

test("an unknown model is the SDK's NotFoundError", async () => {
  await assert.rejects(complete("xx", "Hi"), (e) => e instanceof OpenAI.NotFoundError && e.code === "model_not_found");
});

test("adapters load and unload at run time, inside --lora-dir only", async () => {
  const auth = { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" };
  const post = (body) => fetch(`${srv.url}/v1/adapters`, { method: "POST", headers: auth, body: JSON.stringify(body) });
  let r = await post({ name: "late", path: "late.gguf", scale: 1.0 });
  assert.equal(r.status, 201, await r.text());
  assert.equal((await client.models.retrieve("late")).parent, "tiny-llama");
  const text = await complete("late", "Once upon a time");
  assert.ok(text.length > 0);
  r = await post({ name: "evil", path: path.join(tmp, "peft-late", "adapter_config.json") });
  assert.equal(r.status, 403);
  assert.match((await r.json()).error.message, /outside the folders given by --lora-dir/);
  r = await post({ name: "evil", path: "../peft-late/adapter_config.json" });
  assert.equal(r.status, 403);
  r = await fetch(`${srv.url}/v1/adapters/late`, { method: "DELETE" });
  assert.equal(r.status, 401);
  r = await fetch(`${srv.url}/v1/adapters/late`, { method: "DELETE", headers: auth });
  assert.equal(r.status, 200);
  await assert.rejects(complete("late", "Hi"), OpenAI.NotFoundError);
  const m = await (await fetch(`${srv.url}/metrics`, { headers: auth })).text();
  assert.ok(metric(m, 'slm_adapter_requests_total{adapter="late"}') >= 1, m);
  assert.ok(metric(m, 'slm_adapter_generated_tokens_total{adapter="fr"}') >= 24, m);
  assert.ok(metric(m, 'slm_adapter_requests_total{adapter=""}') >= 3, m);
});

// --lora-type q8 (8-bit factors, every adapter the server loads): the rows
// of each sequence still take the same steps whatever shares its batch, so
// mixed batches equal each request alone, and the adapters still differ.
test("--lora-type q8: mixed batches equal each alone", async () => {
  const args = NAMES.flatMap((n) => ["--lora", `${n}=${path.join(loraDir, `${n}.gguf`)}`]);
  const q8 = await startServer(["--model", BASE, "--parallel", "8", "--ctx-size", "256", "--lora-type", "q8",
    ...args]);
  try {
    const c = new OpenAI({ apiKey: "none", baseURL: `${q8.url}/v1`, maxRetries: 0 });
    const run = async (m, prompt) =>
      (await c.completions.create({ model: m, prompt, max_tokens: 12, temperature: 0 })).choices[0].text;
    const jobs = ["de", "tiny-llama", "es", "fr", "it", "es", "de", "it"].map((m, i) => ({
      m, prompt: `Once upon a time ${["there", "a cat", "in a", "the sun", "we", "my dog", "it", "one"][i]}`,
    }));
    const alone = [];
    for (const j of jobs) alone.push(await run(j.m, j.prompt));
    assert.deepEqual(await Promise.all(jobs.map((j) => run(j.m, j.prompt))), alone);
    const per = await Promise.all(["tiny-llama", ...NAMES].map((m) => run(m, "Once upon a time")));
    assert.equal(new Set(per).size, 5, JSON.stringify(per));
  } finally {
    await q8.stop();
  }
});
