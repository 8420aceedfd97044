// The web chat page in headless Chromium: it loads with nothing from outside,
// asks for the API key in words and keeps it for the tab, sends a message,
// shows the answer streaming in, Stop ends the generation and frees the
// server's slot, the max-tokens field reaches the request, Clear aborts.
// Markdown is rendered from DOM nodes only (hostile model text stays text),
// and each answer can be copied and the last one regenerated.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import { chromium } from "playwright-core";
import { startServer, model, waitForIdle, metric, requireFile } from "./harness.mjs";

const KEY = "web-page-key";
const chromiumPath = process.env.SLM_CHROMIUM || "/usr/bin/chromium";
let srv, browser;

before(async () => {
  requireFile(chromiumPath);
  // tiny-qwen2 (random weights) rarely picks an end token, so an answer runs
  // on until Stop; the key checks that the page sends it.
  srv = await startServer(["--model", model("tiny-qwen2.gguf"), "--ctx-size", "8192", "--parallel", "2",
                           "--api-key", KEY, "--cost-per-hour", "2.5"]);
  browser = await chromium.launch({ executablePath: chromiumPath, args: ["--no-sandbox"] });
});
after(async () => {
  await browser?.close();
  await srv?.stop();
});

test("chat page streams an answer and Stop ends it", async () => {
  const page = await browser.newPage();
  const foreign = [];
  page.on("request", (r) => { if (!r.url().startsWith(srv.url)) foreign.push(r.url()); });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));

  const bodies = [];
  page.on("request", (r) => {
    if (r.url().endsWith("/v1/chat/completions")) bodies.push(JSON.parse(r.postData()));
  });

  await page.goto(srv.url + "/");
  assert.equal(await page.title(), "slm chat");
  // Authentication is on: the page says so in words and asks for the key.
  await page.waitForSelector("#keyform:not([hidden])");
  assert.match(await page.textContent("#keyform"), /This server needs an API key/);
  await page.fill("#apikey", KEY);
  await page.click("#keysave");
  await page.waitForFunction(() => document.getElementById("model").textContent === "tiny-qwen2");
  assert.equal(await page.isHidden("#keyform"), true);
  assert.equal(await page.evaluate(() => sessionStorage.getItem("slm.apikey")), KEY);
  // Kept while the tab is open: a reload does not ask again.
  await page.reload();
  await page.waitForFunction(() => document.getElementById("model").textContent === "tiny-qwen2");
  assert.equal(await page.isHidden("#keyform"), true);

  await page.fill("#system", "You are a helpful assistant.");
  await page.fill("#temperature", "0.7");
  await page.fill("#input", "Tell me a long story");
  await page.click("#send");

  const answer = ".msg.assistant .content";
  await page.waitForFunction((sel) => (document.querySelector(sel)?.textContent || "").length > 0, answer);
  const first = (await page.textContent(answer)).length;
  assert.equal(await page.isEnabled("#stop"), true);
  assert.equal(await page.isEnabled("#send"), false);
  // More text arrives while we watch: it is streaming, not one final block.
  await page.waitForFunction(([sel, n]) => document.querySelector(sel).textContent.length > n + 20, [answer, first]);
  let m = await (await fetch(srv.url + "/metrics", { headers: { Authorization: `Bearer ${KEY}` } })).text();
  assert.equal(metric(m, "slm_active_sequences"), 1);

  await page.click("#stop");
  await page.waitForFunction(() => !document.getElementById("send").disabled);
  assert.equal(await page.isEnabled("#stop"), false);
  await page.waitForFunction(() => document.querySelector(".msg.assistant .stats").textContent !== "");
  // The partial answer stays, and its statistics still show how it ended
  // and how fast it came, though Stop cut the stream before its usage chunk.
  const stopStats = await page.textContent(".msg.assistant .stats");
  assert.match(stopStats, /finish: stopped · ~(\d+) tokens · (\d+\.\d) tokens\/s · first token \d+\.\d\d s/);
  const [, nStopped, rate] = stopStats.match(/~(\d+) tokens · (\d+\.\d) tokens\/s/);
  assert.ok(Number(nStopped) > 1 && Number(rate) > 0, stopStats);
  assert.ok((await page.textContent(answer)).length > 0, "the partial answer stays");
  const stoppedAt = (await page.textContent(answer)).length;
  await new Promise((r) => setTimeout(r, 300));
  assert.equal((await page.textContent(answer)).length, stoppedAt, "no text after Stop");

  // The aborted fetch freed the slot on the server.
  m = await waitForIdle(srv.url, { Authorization: `Bearer ${KEY}` });
  assert.equal(metric(m, "slm_active_sequences"), 0);

  // A second, short exchange, capped by the max-tokens field, completes and
  // shows its statistics and finish reason.
  await page.fill("#maxtokens", "8");
  await page.fill("#input", "hi");
  await page.click("#send");
  await page.waitForFunction(() => document.querySelectorAll(".msg.assistant .stats")[1]?.textContent.includes("tokens"));
  const stats = await page.$$eval(".msg.assistant .stats", (els) => els[1].textContent);
  assert.match(stats, /8 tokens/);
  assert.match(stats, /finish: length/);
  assert.match(stats, /cost ~\$/);
  assert.equal(await page.$$eval(".msg.user", (els) => els.length), 2);
  assert.equal(bodies.length, 2);
  assert.equal(bodies[0].max_tokens, undefined, "an empty field sends no max_tokens");
  assert.equal(bodies[1].max_tokens, 8);
  assert.equal(bodies[1].temperature, 0.7);
  // The stopped answer is part of the history the second request sent.
  assert.deepEqual(bodies[1].messages.map((m) => m.role), ["system", "user", "assistant", "user"]);

  // Clear while an answer streams: the answer ends and the slot is freed.
  await page.fill("#maxtokens", "");
  await page.fill("#input", "Tell me another long story");
  await page.click("#send");
  await page.waitForFunction(() => (document.querySelector(".msg.assistant .content")?.textContent || "").length > 10);
  await page.click("#clear");
  await page.waitForFunction(() => !document.getElementById("send").disabled);
  assert.equal(await page.$$eval(".msg", (els) => els.length), 0);
  m = await waitForIdle(srv.url, { Authorization: `Bearer ${KEY}` });
  assert.equal(metric(m, "slm_active_sequences"), 0);

  assert.deepEqual(foreign, [], "the page loads nothing from elsewhere");
  assert.deepEqual(errors, []);
  await page.close();
});

test("a wrong or stale key is asked for again", async () => {
  const page = await browser.newPage();
  // Stored before the page's script runs (on a same-origin page without one).
  await page.goto(srv.url + "/slm/info");
  await page.evaluate(() => sessionStorage.setItem("slm.apikey", "not-the-key"));
  await page.goto(srv.url + "/");
  await page.waitForSelector("#keyform:not([hidden])");
  assert.match(await page.textContent("#keyerror"), /did not accept the key \(401\)/);
  assert.equal(await page.evaluate(() => sessionStorage.getItem("slm.apikey")), null);
  await page.fill("#apikey", KEY);
  await page.press("#apikey", "Enter");
  await page.waitForFunction(() => document.getElementById("model").textContent === "tiny-qwen2");
  assert.equal(await page.isHidden("#keyform"), true);
  await page.close();
});

// Hostile and ordinary Markdown through the page's renderer.
test("Markdown renders from DOM nodes; HTML in model text stays text", async () => {
  const page = await browser.newPage();
  await page.goto(srv.url + "/");
  const r = await page.evaluate(() => {
    window.__pwned = 0;
    const render = (text) => {
      const div = document.createElement("div");
      div.append(window.slmRenderMarkdown(text));
      document.body.append(div);
      return div;
    };
    const hostile = render('<img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script>\n' +
                           '**<b onclick=x>bold</b>** `<svg onload=alert(1)>`\n' +
                           '```html\n<iframe src="javascript:alert(1)"></iframe>\n```\n' +
                           '[click](javascript:alert(1)) [data](data:text/html,<script>x</script>)');
    const md = render("Intro with **bold**, *italic*, _also_ and `a < b`.\nSecond line.\n\n" +
                      "- one\n- **two**\n\n1. first\n2. second\n\n" +
                      "```python\nif x < 3:\n    print('<hi>')\n```\n\n" +
                      "See [the docs](https://example.com/a?b=1) or [here](http://example.org).\n" +
                      "## Heading\nend");
    const tags = (el) => [...el.querySelectorAll("*")].map((e) => e.tagName.toLowerCase());
    return {
      hostileTags: tags(hostile),
      hostileText: hostile.textContent,
      hostileLinks: hostile.querySelectorAll("a").length,
      strongText: hostile.querySelector("strong")?.textContent,
      preLang: hostile.querySelector("pre code")?.className,
      preText: hostile.querySelector("pre code")?.textContent,
      mdTags: tags(md),
      strong: md.querySelector("p strong")?.textContent,
      em: [...md.querySelectorAll("p em")].map((e) => e.textContent),
      inlineCode: md.querySelector("p code")?.textContent,
      lis: [...md.querySelectorAll("ul li")].map((e) => e.textContent),
      olis: [...md.querySelectorAll("ol li")].map((e) => e.textContent),
      code: md.querySelector("pre code.language-python")?.textContent,
      links: [...md.querySelectorAll("a")].map((a) => [a.textContent, a.getAttribute("href"), a.rel]),
      h: md.querySelector("h4")?.textContent,
      brs: md.querySelector("p").querySelectorAll("br").length,
    };
  });
  await new Promise((res) => setTimeout(res, 100));
  assert.equal(await page.evaluate(() => window.__pwned), 0);
  for (const t of r.hostileTags) assert.ok(["p", "br", "strong", "code", "pre", "span"].includes(t), `tag ${t}`);
  assert.equal(r.hostileLinks, 0);
  assert.ok(r.hostileText.includes('<img src=x onerror="window.__pwned=1">'));
  assert.ok(r.hostileText.includes("<script>window.__pwned=2</script>"));
  assert.ok(r.hostileText.includes("[click](javascript:alert(1))"));
  assert.equal(r.strongText, "<b onclick=x>bold</b>");
  assert.equal(r.preLang, "language-html");
  assert.equal(r.preText, '<iframe src="javascript:alert(1)"></iframe>');

  assert.equal(r.strong, "bold");
  assert.deepEqual(r.em, ["italic", "also"]);
  assert.equal(r.inlineCode, "a < b");
  assert.equal(r.brs, 1);
  assert.deepEqual(r.lis, ["one", "two"]);
  assert.deepEqual(r.olis, ["first", "second"]);
  assert.equal(r.code, "if x < 3:\n    print('<hi>')");
  assert.deepEqual(r.links, [["the docs", "https://example.com/a?b=1", "noopener noreferrer nofollow"],
                             ["here", "http://example.org/", "noopener noreferrer nofollow"]]);
  assert.equal(r.h, "Heading");
  await page.close();
});

// Server-sent events for one mocked answer, as slm sends them.
function sse(text, finish = "stop") {
  const ev = (o) => `data: ${JSON.stringify(o)}\n\n`;
  const base = { id: "chatcmpl-mock", object: "chat.completion.chunk", model: "tiny-qwen2" };
  let out = ev({ ...base, choices: [{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }] });
  for (const piece of text.match(/[\s\S]{1,7}/g))
    out += ev({ ...base, choices: [{ index: 0, delta: { content: piece }, finish_reason: null }] });
  out += ev({ ...base, choices: [{ index: 0, delta: {}, finish_reason: finish }] });
  out += ev({ ...base, choices: [], usage: { prompt_tokens: 5, completion_tokens: 9, total_tokens: 14 } });
  return out + "data: [DONE]\n\n";
}

// The page's own streaming path with answers served by page.route: a hostile
// answer rendered safely, Copy (Clipboard API and the fallback), Regenerate,
// a failed turn left out of the history, and the oldest exchange dropped when
// the context is full.
test("answers: copy, regenerate, failed turn", async () => {
  const context = await browser.newContext();
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: srv.url });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const answers = [
    "Here: <img src=x onerror=\"window.__pwned=1\">\n\n```js\nlet a = 1 < 2;\n```\n**done**",
    "A *second* answer.",
  ];
  const sent = [];
  await page.route("**/v1/chat/completions", async (route) => {
    sent.push(JSON.parse(route.request().postData()));
    const i = sent.length - 1;
    if (sent[i].messages.filter((m) => m.role !== "system").length > 3) {  // a small context, as slm answers when it is full
      await route.fulfill({ status: 400, contentType: "application/json",
                            body: JSON.stringify({ error: { message: "the prompt is 900 tokens but the context holds 512",
                                                            type: "invalid_request_error", param: "messages",
                                                            code: "context_length_exceeded" } }) });
      return;
    }
    if (i === 2) {  // the third request fails
      await route.fulfill({ status: 500, contentType: "application/json",
                            body: JSON.stringify({ error: { message: "mock failure", type: "server_error" } }) });
      return;
    }
    await route.fulfill({ status: 200, contentType: "text/event-stream", body: sse(answers[Math.min(i, 1)]) });
  });
  await page.goto(srv.url + "/slm/info");
  await page.evaluate((k) => sessionStorage.setItem("slm.apikey", k), KEY);
  await page.goto(srv.url + "/");
  await page.evaluate(() => { window.__pwned = 0; });
  await page.waitForFunction(() => document.getElementById("model").textContent === "tiny-qwen2");

  await page.fill("#input", "show me");
  await page.click("#send");
  await page.waitForSelector(".msg.assistant .actions .copy");
  const a = ".msg.assistant .content";
  assert.equal(await page.$eval(a, (el) => el.querySelector("pre code.language-js")?.textContent), "let a = 1 < 2;");
  assert.equal(await page.$eval(a, (el) => el.querySelector("strong")?.textContent), "done");
  assert.equal(await page.$eval(a, (el) => el.querySelectorAll("img, script").length), 0);
  assert.ok((await page.textContent(a)).includes('<img src=x onerror="window.__pwned=1">'));
  assert.equal(await page.evaluate(() => window.__pwned), 0);
  // The statistics follow the buttons (after a look at /slm/info).
  await page.waitForFunction(() => document.querySelector(".msg.assistant .stats").textContent !== "");
  assert.match(await page.textContent(".msg.assistant .stats"), /finish: stop · 9 tokens/);

  // Copy puts the answer's Markdown source on the clipboard.
  await page.click(".msg.assistant .copy");
  await page.waitForFunction(() => document.querySelector(".msg.assistant .copy").textContent === "Copied");
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), answers[0]);
  // Without the Clipboard API (plain http to another host) it falls back to execCommand.
  const copied = await page.evaluate(async () => {
    Object.defineProperty(navigator, "clipboard", { value: undefined, configurable: true });
    let seen = null;
    document.execCommand = (cmd) => { seen = cmd === "copy" ? document.activeElement.value : null; return true; };
    document.querySelector(".msg.assistant .copy").click();
    await new Promise((r) => setTimeout(r, 50));
    return seen;
  });
  assert.equal(copied, answers[0]);

  // Regenerate re-asks the same question without the old answer, and
  // replaces it.
  assert.equal(await page.isEnabled("#regen"), true);
  await page.click("#regen");
  await page.waitForFunction(() => document.querySelector(".msg.assistant .content")?.textContent === "A second answer.");
  assert.equal(await page.$$eval(".msg.assistant", (els) => els.length), 1);
  assert.equal(await page.$$eval(".msg.user", (els) => els.length), 1);
  assert.deepEqual(sent[1].messages, [{ role: "user", content: "show me" }]);
  assert.equal(await page.$eval(".msg.assistant .content em", (el) => el.textContent), "second");

  // A failed turn shows its error and leaves the history: the next request
  // does not carry it.
  await page.fill("#input", "this one fails");
  await page.click("#send");
  await page.waitForSelector(".msg.assistant.error");
  assert.match(await page.textContent(".msg.assistant.error"), /mock failure/);
  assert.equal(await page.isEnabled("#regen"), false);
  await page.fill("#input", "next");
  await page.click("#send");
  await page.waitForFunction(() => document.querySelectorAll(".msg.assistant .copy").length === 2);
  assert.deepEqual(sent[3].messages.map((m) => m.content),
                   ["show me", "A *second* answer.", "next"]);

  // The context is full: the oldest exchange is dropped (the system prompt
  // stays) and the question asked again, and the answer says so.
  await page.fill("#system", "Be brief.");
  await page.fill("#input", "more");
  await page.click("#send");
  await page.waitForFunction(() => document.querySelectorAll(".msg.assistant .copy").length === 3);
  assert.equal(sent.length, 6);
  assert.deepEqual(sent[4].messages.map((m) => m.content),
                   ["Be brief.", "show me", "A *second* answer.", "next", "A *second* answer.", "more"]);
  assert.deepEqual(sent[5].messages.map((m) => m.content), ["Be brief.", "next", "A *second* answer.", "more"]);
  assert.equal(sent[5].messages[0].role, "system");
  const lastStats = async () => {
    await page.waitForFunction(() => [...document.querySelectorAll(".msg.assistant .stats")].at(-1).textContent !== "");
    return page.$$eval(".msg.assistant .stats", (els) => els[els.length - 1].textContent);
  };
  assert.match(await lastStats(), /context full: 1 oldest exchange dropped/);
  // It is said once: the next drop is silent.
  await page.fill("#input", "again");
  await page.click("#send");
  await page.waitForFunction(() => document.querySelectorAll(".msg.assistant .copy").length === 4);
  assert.equal(sent.length, 8);
  assert.deepEqual(sent[7].messages.map((m) => m.content), ["Be brief.", "more", "A *second* answer.", "again"]);
  const again = await lastStats();
  assert.match(again, /finish: stop/);
  assert.doesNotMatch(again, /context full/);
  assert.deepEqual(errors, []);
  await context.close();
});
