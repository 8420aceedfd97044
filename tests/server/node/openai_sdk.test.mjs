// slm serve through the official OpenAI Node SDK: chat (whole and streamed),
// completions, the model list, and the SDK's error classes for 401/400/404.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startServer, model } from "./harness.mjs";

const KEY = "test-key-0123456789";
let chatSrv, storySrv, client, stories;

before(async () => {
  // tiny-qwen2: real Qwen vocabulary and chat template (random weights);
  // stories260K: real text for completions.
  [chatSrv, storySrv] = await Promise.all([
    startServer(["--model", model("tiny-qwen2.gguf"), "--api-key", KEY, "--ctx-size", "2048", "--parallel", "2"]),
    startServer(["--model", model("stories260K.gguf"), "--api-key", KEY]),
  ]);
  client = new OpenAI({ apiKey: KEY, baseURL: `${chatSrv.url}/v1`, maxRetries: 0 });
  stories = new OpenAI({ apiKey: KEY, baseURL: `${storySrv.url}/v1`, maxRetries: 0 });
});

after(async () => {
  await Promise.all([chatSrv?.stop(), storySrv?.stop()]);
});

test("models list", async () => {
  const list = await client.models.list();
  const ids = list.data.map((m) => m.id);
  assert.deepEqual(ids, ["tiny-qwen2"]);
  assert.equal(list.data[0].object, "model");
  const one = await client.models.retrieve("tiny-qwen2");
  assert.equal(one.id, "tiny-qwen2");
});

test("chat completion, not streamed", async () => {
  const r = await client.chat.completions.create({
    model: "tiny-qwen2",
    messages: [{ role: "system", content: "You are terse." }, { role: "user", content: "Say hello" }],
    max_tokens: 12,
    temperature: 0,
    seed: 7,
  });
  assert.equal(r.object, "chat.completion");
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, "assistant");
  assert.equal(typeof r.choices[0].message.content, "string");
  assert.ok(["stop", "length"].includes(r.choices[0].finish_reason));
  assert.ok(r.usage.prompt_tokens > 5);
  assert.ok(r.usage.completion_tokens <= 12);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  // Greedy decoding is deterministic.
  const again = await client.chat.completions.create({
    model: "tiny-qwen2",
    messages: [{ role: "system", content: "You are terse." }, { role: "user", content: "Say hello" }],
    max_tokens: 12,
    temperature: 0,
  });
  assert.equal(again.choices[0].message.content, r.choices[0].message.content);
  // The second run reused the cached prompt.
  assert.ok(again.usage.prompt_tokens_details.cached_tokens > 0);
});

test("chat completion, streamed with usage", async () => {
  const body = {
    model: "tiny-qwen2",
    messages: [{ role: "user", content: "Count to five" }],
    max_tokens: 16,
    temperature: 0,
  };
  const whole = await client.chat.completions.create(body);
  const stream = await client.chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } });
  let text = "", first = true, finish = null, usage = null, n = 0;
  for await (const chunk of stream) {
    n++;
    assert.equal(chunk.object, "chat.completion.chunk");
    if (first) {
      assert.equal(chunk.choices[0].delta.role, "assistant");
      first = false;
    }
    if (chunk.usage) usage = chunk.usage;
    if (chunk.choices.length === 0) continue;
    text += chunk.choices[0].delta.content || "";
    if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
  }
  assert.ok(n >= 3);
  assert.equal(text, whole.choices[0].message.content);
  assert.equal(finish, whole.choices[0].finish_reason);
  assert.ok(usage, "usage chunk");
  assert.equal(usage.completion_tokens, whole.usage.completion_tokens);
});

test("completions, whole and streamed, with stop and logprobs", async () => {
  const r = await stories.completions.create({
    model: "stories260K",
    prompt: "Once upon a time",
    max_tokens: 30,
    temperature: 0,
  });
  assert.equal(r.object, "text_completion");
  assert.ok(r.choices[0].text.startsWith(", there was a little girl named Lily"), r.choices[0].text);
  assert.equal(r.choices[0].finish_reason, "length");
  assert.equal(r.usage.completion_tokens, 30);

  const s = await stories.completions.create({
    model: "stories260K",
    prompt: "Once upon a time",
    max_tokens: 30,
    temperature: 0,
    stop: ["Lily"],
    stream: true,
  });
  let text = "", finish = null;
  for await (const c of s) {
    text += c.choices[0]?.text || "";
    finish = c.choices[0]?.finish_reason || finish;
  }
  assert.equal(text, ", there was a little girl named ");
  assert.equal(finish, "stop");

  const lp = await stories.completions.create({
    model: "stories260K", prompt: "Once upon a time", max_tokens: 3, temperature: 0, logprobs: 2,
  });
  assert.equal(lp.choices[0].logprobs.tokens.length, 3);
  assert.equal(Object.keys(lp.choices[0].logprobs.top_logprobs[0]).length, 2);
  const chatLp = await client.chat.completions.create({
    model: "tiny-qwen2", messages: [{ role: "user", content: "hi" }], max_tokens: 2, temperature: 0,
    logprobs: true, top_logprobs: 3,
  });
  assert.ok(chatLp.choices[0].logprobs.content.length >= 1);
  assert.equal(chatLp.choices[0].logprobs.content[0].top_logprobs.length, 3);
});

test("wrong or missing API key is a 401 AuthenticationError", async () => {
  const bad = new OpenAI({ apiKey: "wrong", baseURL: `${chatSrv.url}/v1`, maxRetries: 0 });
  await assert.rejects(bad.models.list(), (e) => {
    assert.ok(e instanceof OpenAI.AuthenticationError, e.constructor.name);
    assert.equal(e.status, 401);
    assert.equal(e.code, "invalid_api_key");
    return true;
  });
  await assert.rejects(
    bad.chat.completions.create({ model: "tiny-qwen2", messages: [{ role: "user", content: "x" }] }),
    OpenAI.AuthenticationError);
});

test("bad requests are 400 BadRequestError naming the field", async () => {
  const cases = [
    [{ temperature: 5 }, "temperature"],
    [{ n: 2 }, "n"],
    [{ max_tokens: -4 }, "max_tokens"],
    [{ response_format: { type: "xml" } }, "response_format.type"],
    [{ messages: [] }, "messages"],
    [{ top_p: "high" }, "top_p"],
  ];
  for (const [extra, param] of cases) {
    await assert.rejects(
      client.chat.completions.create({ model: "tiny-qwen2", messages: [{ role: "user", content: "x" }], ...extra }),
      (e) => {
        assert.ok(e instanceof OpenAI.BadRequestError, `${param}: ${e.constructor.name}`);
        assert.equal(e.status, 400);
        assert.equal(e.param, param);
        assert.equal(e.type, "invalid_request_error");
        return true;
      });
  }
  await assert.rejects(
    client.chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: "x" }] }),
    (e) => e instanceof OpenAI.NotFoundError && e.code === "model_not_found");
  // Still serving.
  const ok = await client.chat.completions.create({
    model: "tiny-qwen2", messages: [{ role: "user", content: "x" }], max_tokens: 2,
  });
  assert.equal(ok.choices.length, 1);
});
