// `slm serve` as a process: the server-wide defaults given on its command
// line (-n, --temp, --system) reach requests that leave them out, --help
// shows them, --alias names the model, and SIGTERM during a streamed answer ends it with an error
// event (then [DONE]) instead of a silent cut.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { startServer, model, slmBin } from "./harness.mjs";

const post = async (url, path, body) => {
  const r = await fetch(url + path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  return { status: r.status, json: await r.json() };
};

test("--help shows the request defaults", () => {
  const help = execFileSync(slmBin, ["serve", "--help"], { encoding: "utf8" });
  assert.match(help, /-n, --n-predict N +tokens per answer when a request sets no max_tokens.*\(default: 0\)/);
  assert.match(help, /--temp T +temperature when a request sets none \(default: 1/);
  assert.match(help, /--system TEXT +system message put first in chats that have none/);
});

test("-n, --temp and --system are defaults for what a request leaves out", async () => {
  const srv = await startServer(["--model", model("stories260K.gguf"), "-n", "6", "--temp", "0",
                                 "--system", "Be brief today.", "--log-prompts"]);
  try {
    const a = await post(srv.url, "/v1/completions", { prompt: "Once upon a time", ignore_eos: true });
    const b = await post(srv.url, "/v1/completions", { prompt: "Once upon a time", ignore_eos: true });
    assert.equal(a.status, 200, JSON.stringify(a.json));
    assert.equal(a.json.usage.completion_tokens, 6);
    assert.equal(a.json.choices[0].text, b.json.choices[0].text, "temperature 0: the same text twice");
    const c = await post(srv.url, "/v1/completions", { prompt: "Once upon a time", ignore_eos: true, max_tokens: 3 });
    assert.equal(c.json.usage.completion_tokens, 3);

    const chat = await post(srv.url, "/v1/chat/completions", { messages: [{ role: "user", content: "Hi there" }] });
    assert.equal(chat.status, 200, JSON.stringify(chat.json));
    assert.ok(chat.json.usage.completion_tokens <= 6);
    const own = await post(srv.url, "/v1/chat/completions", {
      max_tokens: 1, messages: [{ role: "system", content: "Mine." }, { role: "user", content: "Hello again" }] });
    assert.equal(own.status, 200);
    // --log-prompts shows what the template got: the default system message
    // before the first chat, the request's own in the second.
    const log = srv.log();
    assert.match(log, /prompt: <\|im_start\|>system\\nBe brief today\.<\|im_end\|>\\n<\|im_start\|>user\\nHi there/);
    assert.match(log, /prompt: <\|im_start\|>system\\nMine\.<\|im_end\|>\\n<\|im_start\|>user\\nHello again/);
    assert.doesNotMatch(log, /Be brief today\.<\|im_end\|>\\n<\|im_start\|>system/);
  } finally {
    await srv.stop();
  }
});

test("--alias NAME is accepted as the model's name", async () => {
  const srv = await startServer(["--model", model("stories260K.gguf"), "--alias", "my-model", "-n", "2"]);
  try {
    const a = await post(srv.url, "/v1/completions", { model: "my-model", prompt: "Once" });
    assert.equal(a.status, 200, JSON.stringify(a.json));
    assert.equal(a.json.usage.completion_tokens, 2);
    const other = await post(srv.url, "/v1/completions", { model: "not-my-model", prompt: "Once" });
    assert.equal(other.status, 404, JSON.stringify(other.json));
    const one = await fetch(srv.url + "/v1/models/my-model");
    assert.equal(one.status, 200);
  } finally {
    await srv.stop();
  }
});

test("SIGTERM ends a streamed answer with an error event, then [DONE]", async () => {
  const srv = await startServer(["--model", model("stories260K.gguf"), "--ctx-size", "32768",
                                 "--allow-long-context"]);
  const exited = new Promise((r) => srv.proc.on("exit", (code, sig) => r({ code, sig })));
  const r = await fetch(srv.url + "/v1/completions", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ prompt: "Once upon a time", ignore_eos: true, max_tokens: 30000, stream: true }),
  });
  assert.equal(r.status, 200);
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let text = "", signalled = false;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += dec.decode(value, { stream: true });
    if (!signalled && text.includes('"text"')) { signalled = true; srv.proc.kill("SIGTERM"); }
  }
  assert.ok(signalled, "the answer ended before the signal");
  const events = text.split("\n\n").filter((e) => e.startsWith("data: "));
  assert.equal(events.at(-1), "data: [DONE]");
  const err = JSON.parse(events.at(-2).slice(6));
  assert.deepEqual(err, { error: { message: "the server is shutting down", type: "server_error",
                                   param: null, code: "server_shutdown" } });
  assert.ok(!text.includes('"finish_reason":"length"'));
  const { code } = await exited;
  assert.equal(code, 0);
  assert.match(srv.log(), /ended by server shutdown/);
});
