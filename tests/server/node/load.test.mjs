// Load on loopback: 16 concurrent streaming clients with different prompts
// all get complete answers, each identical (greedy) to the same request run
// alone; 5 clients that drop mid-stream leave no slot or queue entry behind.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, model, streamRequest, waitForIdle, metric } from "./harness.mjs";

let stories, qwen;

before(async () => {
  [stories, qwen] = await Promise.all([
    startServer(["--model", model("stories260K.gguf"), "--parallel", "4", "--prefill-chunk", "16"]),
    startServer(["--model", model("tiny-qwen2.gguf"), "--parallel", "4", "--ctx-size", "4096"]),
  ]);
});
after(async () => { await Promise.all([stories?.stop(), qwen?.stop()]); });

const subjects = ["a cat", "a dog", "a girl named Lily", "a boy named Tom", "a big tree", "the sun", "a small bird",
                  "a red ball", "the park", "a fish", "a princess", "a car", "a little bear", "the moon", "a frog",
                  "a kind old man"];

test("16 concurrent streams each match the same request alone", async () => {
  const bodies = subjects.map((s, i) => ({
    prompt: `Once upon a time there was ${s}.`, max_tokens: 40 + (i % 4) * 10, temperature: 0,
  }));
  const alone = [];
  for (const b of bodies) alone.push(await streamRequest(stories.url, "/v1/completions", b));
  const t0 = Date.now();
  const together = await Promise.all(bodies.map((b) => streamRequest(stories.url, "/v1/completions", b)));
  const ms = Date.now() - t0;
  for (let i = 0; i < bodies.length; i++) {
    assert.ok(together[i].done, `stream ${i} ended with [DONE]`);
    assert.equal(together[i].finish, alone[i].finish, `finish of ${i}`);
    assert.ok(together[i].text.length > 0, `stream ${i} has text`);
    assert.equal(together[i].text, alone[i].text, `stream ${i} (${subjects[i]})`);
  }
  await waitForIdle(stories.url);
  // A request is counted once its connection is done, a moment after the
  // client has read [DONE].
  const counted = 'slm_requests_total{endpoint="completions",status="200"}';
  let n = 0;
  for (let i = 0; i < 500 && n !== 32; i++) {  // up to 10 s on a loaded machine
    n = metric(await (await fetch(`${stories.url}/metrics`)).text(), counted);
    if (n !== 32) await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(n, 32);
  console.log(`16 concurrent streams in ${ms} ms`);
});

test("5 clients that disconnect mid-stream leave the server idle", async () => {
  const drop = Array.from({ length: 5 }, (_, i) => streamRequest(qwen.url, "/v1/completions", {
    prompt: `client ${i} says`, max_tokens: 3000, ignore_eos: true, temperature: 0.8,
  }, { onChunk: (c) => (c.choices[0]?.text ? (drop.seen[i] = (drop.seen[i] || 0) + 1) >= 3 ? "abort" : null : null) }));
  drop.seen = [];
  // A well-behaved client streams beside them and finishes.
  const ok = streamRequest(qwen.url, "/v1/completions", { prompt: "steady", max_tokens: 30, ignore_eos: true });
  const results = await Promise.all([...drop, ok]);
  for (let i = 0; i < 5; i++) assert.equal(results[i].finish, "aborted");
  assert.equal(results[5].finish, "length");
  const m = await waitForIdle(qwen.url);
  assert.equal(metric(m, "slm_active_sequences"), 0);
  assert.equal(metric(m, "slm_queue_length"), 0);
  assert.equal(metric(m, 'slm_kv_cache_tokens{state="active"}'), 0);
  // And it keeps serving.
  const after = await streamRequest(qwen.url, "/v1/completions", { prompt: "again", max_tokens: 5, ignore_eos: true });
  assert.equal(after.finish, "length");
});
