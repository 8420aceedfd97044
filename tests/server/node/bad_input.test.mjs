// Hostile and malformed requests: each gets its documented HTTP status and
// an OpenAI error object, and the server keeps serving everyone else.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { startServer, model } from "./harness.mjs";

const KEY = "bad-input-key";
let srv, qwen;

before(async () => {
  [srv, qwen] = await Promise.all([
    startServer(["--model", model("stories260K.gguf"), "--api-key", KEY, "--parallel", "2"]),
    // One slot and no queue, for the 429 case; a long context so a request
    // can keep the slot busy.
    startServer(["--model", model("tiny-qwen2.gguf"), "--parallel", "1", "--max-queue", "0",
                 "--ctx-size", "4096"]),
  ]);
});
after(async () => { await Promise.all([srv?.stop(), qwen?.stop()]); });

// Raw request with node:http so any bytes (invalid UTF-8, huge bodies) go out as given.
function raw(url, path, { method = "POST", body = "", headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(path, url);
    const all = { "Content-Type": "application/json", Authorization: `Bearer ${KEY}`, ...headers };
    for (const k of Object.keys(all)) if (all[k] === null) delete all[k];  // null: leave the header out
    const req = http.request(u, { method, headers: all }, (res) => {
      const parts = [];
      res.on("data", (d) => parts.push(d));
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers,
                                    text: Buffer.concat(parts).toString("utf8") }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

async function expectError(res, status, param) {
  assert.equal(res.status, status, res.text);
  const j = JSON.parse(res.text);
  assert.ok(j.error, res.text);
  assert.equal(typeof j.error.message, "string");
  assert.ok(j.error.message.length > 0);
  assert.ok("type" in j.error && "param" in j.error && "code" in j.error, res.text);
  if (param !== undefined) assert.equal(j.error.param, param, res.text);
  return j.error;
}

async function stillServing() {
  const r = await raw(srv.url, "/v1/completions", { body: JSON.stringify({ prompt: "Once", max_tokens: 3 }) });
  assert.equal(r.status, 200, r.text);
  assert.equal(JSON.parse(r.text).usage.completion_tokens, 3);
}

const chat = (extra) => JSON.stringify({ messages: [{ role: "user", content: "hi" }], max_tokens: 4, ...extra });

test("invalid JSON", async () => {
  for (const body of ["{", "{\"messages\": tru}", "[]", "null", "", "{\"a\":1}}"]) {
    await expectError(await raw(srv.url, "/v1/chat/completions", { body }), 400);
  }
  await stillServing();
});

test("wrong types and out-of-range numbers name the field", async () => {
  const cases = [
    [{ temperature: "warm" }, "temperature"], [{ temperature: -1 }, "temperature"],
    [{ max_tokens: -5 }, "max_tokens"], [{ max_tokens: 1e300 }, "max_tokens"],
    [{ max_tokens: 123456789012 }, "max_tokens"], [{ top_p: 7 }, "top_p"], [{ n: 3 }, "n"],
    [{ seed: "x" }, "seed"], [{ stop: 3 }, "stop"], [{ logit_bias: { "100000": 1 } }, "logit_bias.100000"],
    [{ logit_bias: { "5": 1e9 } }, "logit_bias.5"], [{ presence_penalty: -9 }, "presence_penalty"],
    [{ stream: 1 }, "stream"], [{ messages: "hello" }, "messages"],
    [{ messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "http://x" } }] }] },
     "messages[0].content[0].type"],
  ];
  for (const [extra, param] of cases) {
    await expectError(await raw(srv.url, "/v1/chat/completions", { body: chat(extra) }), 400, param);
  }
  await expectError(await raw(srv.url, "/v1/completions", { body: JSON.stringify({ prompt: [1, 99999] }) }), 400,
                    "prompt[1]");
  await stillServing();
});

test("unknown fields are ignored", async () => {
  const r = await raw(srv.url, "/v1/chat/completions", { body: chat({ frobnicate: [1, { x: 2 }], service_tier: "auto" }) });
  assert.equal(r.status, 200, r.text);
});

test("invalid UTF-8 is refused naming the field", async () => {
  const body = Buffer.concat([Buffer.from('{"messages":[{"role":"user","content":"ok'), Buffer.from([0xc3, 0x28]),
                              Buffer.from('"}]}')]);
  const e = await expectError(await raw(srv.url, "/v1/chat/completions", { body }), 400, "messages[0].content");
  assert.match(e.message, /UTF-8/);
  await stillServing();
});

test("empty messages and empty content", async () => {
  await expectError(await raw(srv.url, "/v1/chat/completions", { body: JSON.stringify({ messages: [] }) }), 400, "messages");
  await expectError(await raw(srv.url, "/v1/chat/completions",
                              { body: JSON.stringify({ messages: [{ role: "user" }] }) }), 400, "messages[0].content");
});

test("a 20 MB body is refused with 413", async () => {
  const big = JSON.stringify({ prompt: "x".repeat(20 << 20) });
  let res;
  try {
    res = await raw(srv.url, "/v1/completions", { body: big });
  } catch (e) {
    // The server may close before the whole body is sent; it must still answer.
    assert.fail(`connection error instead of 413: ${e.message}`);
  }
  await expectError(res, 413);
  await stillServing();
});

test("a prompt over the context is a 400 saying so", async () => {
  const long = "Once upon a time there was a dog. ".repeat(40);
  const e = await expectError(await raw(srv.url, "/v1/completions", { body: JSON.stringify({ prompt: long }) }), 400);
  assert.equal(e.code, "context_length_exceeded");
  assert.match(e.message, /context/);
  const e2 = await expectError(await raw(srv.url, "/v1/completions",
                                         { body: JSON.stringify({ prompt: "Once", max_tokens: 500 }) }), 400);
  assert.ok(["max_tokens"].includes(e2.param), JSON.stringify(e2));
  await stillServing();
});

test("missing or wrong API key is 401; health and the page need none", async () => {
  const missing = await raw(srv.url, "/v1/models", { method: "GET", headers: { Authorization: "" } });
  await expectError(missing, 401);
  const wrong = await raw(srv.url, "/v1/chat/completions", { body: chat({}), headers: { Authorization: "Bearer nope" } });
  assert.equal((await expectError(wrong, 401)).code, "invalid_api_key");
  await expectError(await raw(srv.url, "/metrics", { method: "GET", headers: { Authorization: "" } }), 401);
  assert.equal((await raw(srv.url, "/health", { method: "GET", headers: { Authorization: "" } })).status, 200);
  assert.equal((await raw(srv.url, "/", { method: "GET", headers: { Authorization: "" } })).status, 200);
  await stillServing();
});

test("unknown URL is 404; wrong content type is 400; unknown model is 404", async () => {
  await expectError(await raw(srv.url, "/v1/nothing", { body: "{}" }), 404);
  await expectError(await raw(srv.url, "/v1/chat/completions", { body: chat({}), headers: { "Content-Type": "text/plain" } }), 400);
  // No Content-Type at all (curl -d without -H, some scripts): the body is read as JSON.
  const bare = await raw(srv.url, "/v1/chat/completions", { body: chat({ max_tokens: 2 }), headers: { "Content-Type": null } });
  assert.equal(bare.status, 200, bare.text);
  const e = await expectError(await raw(srv.url, "/v1/chat/completions", { body: chat({ model: "gpt-4" }) }), 404, "model");
  assert.equal(e.code, "model_not_found");
});

test("a full queue is 429 with Retry-After, and the slot comes back", async () => {
  const ac = new AbortController();
  const long = await fetch(`${qwen.url}/v1/completions`, {
    method: "POST", headers: { "Content-Type": "application/json" }, signal: ac.signal,
    body: JSON.stringify({ prompt: "hello", max_tokens: 4000, ignore_eos: true, stream: true }),
  });
  assert.equal(long.status, 200);
  const reader = long.body.getReader();
  await reader.read();  // the slot is busy now
  const busy = await raw(qwen.url, "/v1/completions", { body: JSON.stringify({ prompt: "x", max_tokens: 2 }) });
  const e = await expectError(busy, 429);
  assert.equal(busy.headers["retry-after"], "1");
  assert.equal(e.code, "queue_full");
  ac.abort();
  // The disconnected stream frees the slot within a step or two.
  const until = Date.now() + 10000;
  let status = 0;
  while (Date.now() < until) {
    status = (await raw(qwen.url, "/v1/completions", { body: JSON.stringify({ prompt: "x", max_tokens: 2 }) })).status;
    if (status === 200) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(status, 200);
});
