// Smoke test of bench/bench_serve.mjs (the benchmark itself is not timed in
// CI): a tiny run on stories260K must finish and report every level.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { slmBin, model, requireFile } from "./harness.mjs";

const script = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../bench/bench_serve.mjs");

test("bench_serve reports tokens/s and time to first token", async () => {
  requireFile(slmBin);
  requireFile(model("stories260K.gguf"));
  const out = await new Promise((resolve, reject) => {
    execFile(process.execPath, [script, model("stories260K.gguf"), "--slm", slmBin, "--streams", "1,2",
                                "--prompt-tokens", "16", "--gen-tokens", "12", "--json"],
             { timeout: 120000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err}\n${stderr}`)) : resolve(stdout)));
  });
  const rows = out.trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(rows.map((r) => r.streams), [1, 2]);
  for (const r of rows) {
    assert.equal(r.tokens, 12 * r.streams);
    assert.ok(r.aggregate_tok_s > 0);
    assert.ok(r.ttft_ms_max >= r.ttft_ms_p99 && r.ttft_ms_p99 >= r.ttft_ms_p50);
    // $/Mtok at the default $0.10/h: the hour's price over the tokens it gives at this rate.
    assert.ok(Math.abs(r.usd_per_mtok - 0.10 / 3600 / (r.tokens / r.wall_s) * 1e6) <= 0.01 * r.usd_per_mtok + 0.001);
  }
});
