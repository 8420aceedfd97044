// Starts `slm serve` for the end-to-end tests: loopback only, a free port
// chosen by the server (--port 0, read back from its first line), and always
// killed when the test process ends.
import { spawn } from "node:child_process";
import path from "node:path";
import fs from "node:fs";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../../..");

export const slmBin = process.env.SLM_BIN || path.join(repo, "build/src/cli/slm");
export const fixtures = process.env.SLM_FIXTURES || path.resolve(repo, "../shared/fixtures");
export const model = (name) => path.join(fixtures, "models", name);

const running = new Set();
function killAll() {
  for (const p of running) {
    try { p.kill("SIGKILL"); } catch { /* already gone */ }
  }
}
process.on("exit", killAll);
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => { killAll(); process.exit(1); });

// Skips (exit code 77, which CTest reports as skipped) when the binary or a
// fixture is missing, except under CI=true where that is a failure.
export function requireFile(file) {
  if (fs.existsSync(file)) return;
  const msg = `missing ${file}`;
  if (process.env.CI === "true") throw new Error(msg);
  console.log(`SKIP: ${msg}`);
  process.exit(77);
}

// Resolves to { url, port, proc, log(), stop() } once the model is loaded.
export async function startServer(args, { timeoutMs = 60000 } = {}) {
  requireFile(slmBin);
  const proc = spawn(slmBin, ["serve", "--host", "127.0.0.1", "--port", "0", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(proc);
  let out = "", err = "";
  proc.stdout.on("data", (d) => { out += d; });
  proc.stderr.on("data", (d) => { err += d; });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${out}\n${err}`)), timeoutMs);
    const check = () => {
      const m = out.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      if (m && /ready:/.test(out)) { clearTimeout(timer); resolve(m[1]); }
    };
    proc.stdout.on("data", check);
    proc.on("exit", (code) => { clearTimeout(timer); reject(new Error(`server exited (${code}):\n${out}\n${err}`)); });
  });
  return {
    url,
    port: Number(url.split(":").pop()),
    proc,
    log: () => out + err,
    stop: async () => {
      if (proc.exitCode !== null) return;
      const done = new Promise((r) => proc.on("exit", r));
      proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), 5000);
      await done;
      clearTimeout(t);
      running.delete(proc);
    },
  };
}

// Reads the value of one Prometheus sample from /metrics text.
export function metric(text, name) {
  const re = new RegExp(`^${name.replace(/[{}"=]/g, (c) => "\\" + c)} (\\S+)$`, "m");
  const m = text.match(re);
  return m ? Number(m[1]) : undefined;
}

export async function waitForIdle(url, headers = {}, timeoutMs = 15000) {
  const until = Date.now() + timeoutMs;
  let text = "";
  while (Date.now() < until) {
    text = await (await fetch(`${url}/metrics`, { headers })).text();
    if (metric(text, "slm_active_sequences") === 0 && metric(text, "slm_queue_length") === 0) return text;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`server did not return to idle:\n${text}`);
}

// Streams a chat or completion request with fetch; returns the text, the
// parsed chunks and the finish reason. onChunk may return "abort".
export async function streamRequest(url, endpoint, body, { headers = {}, onChunk } = {}) {
  const ac = new AbortController();
  const r = await fetch(`${url}${endpoint}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers },
    body: JSON.stringify({ ...body, stream: true }),
    signal: ac.signal,
  });
  if (!r.ok) throw new Error(`${r.status}: ${await r.text()}`);
  const reader = r.body.getReader();
  const dec = new TextDecoder("utf-8", { fatal: true });
  let buf = "", text = "", finish = null, done = false;
  const chunks = [];
  try {
    while (!done) {
      const { value, done: end } = await reader.read();
      if (end) break;
      buf += dec.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const ev = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        if (ev.startsWith(":")) continue;
        if (!ev.startsWith("data: ")) throw new Error(`bad event ${JSON.stringify(ev)}`);
        const data = ev.slice(6);
        if (data === "[DONE]") { done = true; break; }
        const c = JSON.parse(data);
        chunks.push(c);
        if (c.error) throw new Error(c.error.message);
        const ch = c.choices[0];
        if (ch) {
          text += (ch.delta ? ch.delta.content : ch.text) || "";
          if (ch.finish_reason) finish = ch.finish_reason;
        }
        if (onChunk && onChunk(c) === "abort") { ac.abort(); return { text, chunks, finish: "aborted" }; }
      }
    }
  } catch (e) {
    if (e.name === "AbortError") return { text, chunks, finish: "aborted" };
    throw e;
  }
  return { text, chunks, finish, done };
}
