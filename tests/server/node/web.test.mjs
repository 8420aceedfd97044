// The web chat page in headless Chromium: it loads with nothing from outside,
// sends a message, shows the answer streaming in, and Stop ends the
// generation and frees the server's slot.
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

  await page.goto(srv.url + "/");
  assert.equal(await page.title(), "slm chat");
  // Authentication is on: the page asks for the key.
  await page.waitForSelector("#keylabel:not([hidden])");
  await page.fill("#apikey", KEY);
  await page.dispatchEvent("#apikey", "change");
  await page.waitForFunction(() => document.getElementById("model").textContent === "tiny-qwen2");

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
  assert.match(await page.textContent(".msg.assistant .stats"), /stopped/);
  const stoppedAt = (await page.textContent(answer)).length;
  await new Promise((r) => setTimeout(r, 300));
  assert.equal((await page.textContent(answer)).length, stoppedAt, "no text after Stop");

  // The aborted fetch freed the slot on the server.
  m = await waitForIdle(srv.url, { Authorization: `Bearer ${KEY}` });
  assert.equal(metric(m, "slm_active_sequences"), 0);

  // A second, short exchange completes and shows its statistics.
  await page.fill("#input", "hi");
  await page.evaluate(() => {
    // Keep this answer short: cap the tokens through the request body.
    const orig = window.fetch;
    window.fetch = (url, opts) => {
      if (String(url).endsWith("/v1/chat/completions")) {
        const b = JSON.parse(opts.body);
        b.max_tokens = 8;
        opts = { ...opts, body: JSON.stringify(b) };
      }
      return orig(url, opts);
    };
  });
  await page.click("#send");
  await page.waitForFunction(() => document.querySelectorAll(".msg.assistant .stats")[1]?.textContent.includes("tokens"));
  const stats = await page.$$eval(".msg.assistant .stats", (els) => els[1].textContent);
  assert.match(stats, /8 tokens/);
  assert.match(stats, /cost ~\$/);
  assert.equal(await page.$$eval(".msg.user", (els) => els.length), 2);

  assert.deepEqual(foreign, [], "the page loads nothing from elsewhere");
  assert.deepEqual(errors, []);
  await page.close();
});
