// Structured output and tool calls through the official OpenAI Node SDK
// against slm serve on tiny-qwen2 (real Qwen vocabulary and chat template,
// random weights): chat.completions.parse with a JSON Schema and with zod
// schemas through openai/helpers/zod (plain and streamed), tool
// calls with tool_choice required (the grammar makes the call certain) and
// auto (the model may or may not call), the SDK assembling streamed tool-call
// deltas, parallel calls, and a tool result sent back.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { LengthFinishReasonError } from "openai/core/error";
import { zodResponseFormat } from "openai/helpers/zod";
import { z } from "zod";
import { startServer, model } from "./harness.mjs";

let srv, client;

before(async () => {
  srv = await startServer(["--model", model("tiny-qwen2.gguf"), "--ctx-size", "2048", "--parallel", "2"]);
  client = new OpenAI({ apiKey: "none", baseURL: `${srv.url}/v1`, maxRetries: 0 });
});

after(async () => {
  await srv?.stop();
});

const person = {
  type: "object",
  properties: {
    name: { type: "string", maxLength: 6 },
    age: { type: "integer", minimum: 0, maximum: 120 },
    role: { enum: ["admin", "user"] },
  },
  required: ["name", "age", "role"],
  additionalProperties: false,
};

function checkPerson(p) {
  assert.equal(typeof p.name, "string");
  assert.ok([...p.name].length <= 6, p.name);
  assert.ok(Number.isInteger(p.age) && p.age >= 0 && p.age <= 120, String(p.age));
  assert.ok(["admin", "user"].includes(p.role));
  assert.deepEqual(Object.keys(p).sort(), ["age", "name", "role"]);
}

// Random weights: an answer may run into max_tokens; try a few seeds.
async function parsed(body) {
  for (let seed = 1; seed <= 8; seed++) {
    try {
      return await client.chat.completions.parse({ ...body, seed });
    } catch (e) {
      if (!(e instanceof LengthFinishReasonError)) throw e;
    }
  }
  throw new Error("every seed ran into max_tokens");
}

test("parse with a strict JSON Schema", async () => {
  const r = await parsed({
    model: "tiny-qwen2",
    messages: [{ role: "user", content: "Describe a person as JSON." }],
    max_tokens: 120,
    response_format: { type: "json_schema", json_schema: { name: "person", strict: true, schema: person } },
  });
  assert.equal(r.choices[0].finish_reason, "stop");
  checkPerson(r.choices[0].message.parsed);
  checkPerson(JSON.parse(r.choices[0].message.content));
});

test("strict schema outside the subset is a 400 naming the pointer", async () => {
  const bad = { ...person, additionalProperties: true };
  await assert.rejects(
    client.chat.completions.create({
      model: "tiny-qwen2",
      messages: [{ role: "user", content: "x" }],
      response_format: { type: "json_schema", json_schema: { name: "p", strict: true, schema: bad } },
    }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === "response_format.json_schema.schema" && /additionalProperties/.test(e.message),
  );
});

// zod schemas through the SDK's helper: zodResponseFormat turns them into
// strict OpenAI schemas (additionalProperties false, every field required,
// nullable fields as anyOf [T, null]) and parse() runs the zod parser over the
// answer, so message.parsed is only set when the server kept to the schema.
const Person = z.object({ name: z.string().max(6), age: z.number().int().min(0).max(120), role: z.enum(["admin", "user"]) });
const Doc = z.object({
  title: z.string().max(8),
  owner: z.object({ name: z.string().max(6), level: z.enum(["low", "high"]) }),
  tags: z.array(z.object({ key: z.string().max(4), on: z.boolean() })).max(2),
  note: z.string().max(5).nullable(),
  score: z.number().int().min(0).max(9).nullable().optional(),
});
const Shapes = z.object({
  kind: z.enum(["circle", "square", "line"]),
  points: z.array(z.object({ x: z.number().int().min(-9).max(9), y: z.number().int().min(-9).max(9) })).min(1).max(3),
  label: z.union([z.string().max(4), z.null()]),
});

const zodCases = [
  ["person (enum)", Person, "person"],
  ["nested object, array of objects, nullable fields", Doc, "doc"],
  ["enum, bounded array of objects, union with null", Shapes, "shapes"],
];

for (const [what, schema, name] of zodCases) {
  test(`parse with a zod schema: ${what}`, async () => {
    const r = await parsed({
      model: "tiny-qwen2",
      messages: [{ role: "user", content: `Answer as JSON: ${name}.` }],
      max_tokens: 200,
      response_format: zodResponseFormat(schema, name),
    });
    assert.equal(r.choices[0].finish_reason, "stop");
    const p = r.choices[0].message.parsed;
    assert.ok(p, "message.parsed is set");
    assert.deepEqual(schema.parse(JSON.parse(r.choices[0].message.content)), p);
    if (schema === Person) checkPerson(p);
    if (schema === Doc) {
      assert.deepEqual(Object.keys(p).sort(), ["note", "owner", "score", "tags", "title"]);
      assert.ok(p.note === null || typeof p.note === "string");
    }
  });
}

test("streamed parse with a zod schema: the SDK assembles and parses the content", async () => {
  let done;
  for (let seed = 1; seed <= 8 && !done; seed++) {
    const stream = client.chat.completions.stream({
      model: "tiny-qwen2",
      messages: [{ role: "user", content: "Answer as JSON: doc." }],
      max_tokens: 200,
      seed,
      response_format: zodResponseFormat(Doc, "doc"),
    });
    let deltas = 0;
    let parsedEvent;
    stream.on("content.delta", () => deltas++);
    stream.on("content.done", (e) => (parsedEvent = e.parsed));
    let final;
    try {
      final = await stream.finalChatCompletion();
    } catch (e) {
      if (e instanceof LengthFinishReasonError) continue;
      throw e;
    }
    if (final.choices[0].finish_reason === "length") continue;
    done = final;
    assert.ok(deltas > 1, `content came in ${deltas} deltas`);
    assert.ok(parsedEvent, "content.done carries the parsed value");
    assert.deepEqual(parsedEvent, final.choices[0].message.parsed);
  }
  assert.ok(done, "every seed ran into max_tokens");
  assert.equal(done.choices[0].finish_reason, "stop");
  assert.deepEqual(Doc.parse(JSON.parse(done.choices[0].message.content)), done.choices[0].message.parsed);
});

const weather = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather in a city",
    strict: true,
    parameters: {
      type: "object",
      properties: { city: { type: "string", maxLength: 8 }, unit: { enum: ["c", "f"] } },
      required: ["city", "unit"],
      additionalProperties: false,
    },
  },
};

function checkWeatherArgs(json) {
  const a = JSON.parse(json);
  assert.equal(typeof a.city, "string");
  assert.ok(["c", "f"].includes(a.unit));
}

test("tool_choice required: a call, then its result round-trips", async () => {
  const messages = [{ role: "user", content: "What is the weather in Paris?" }];
  let r;
  for (let seed = 1; seed <= 8 && !r; seed++) {
    const x = await client.chat.completions.create({
      model: "tiny-qwen2", messages, tools: [weather], tool_choice: "required", parallel_tool_calls: false, max_tokens: 150, seed,
    });
    if (x.choices[0].finish_reason !== "length") r = x;
  }
  assert.ok(r, "every seed ran into max_tokens");
  const m = r.choices[0].message;
  assert.equal(r.choices[0].finish_reason, "tool_calls");
  assert.equal(m.content, null);
  assert.equal(m.tool_calls.length, 1);
  const call = m.tool_calls[0];
  assert.equal(call.type, "function");
  assert.match(call.id, /^call_/);
  assert.equal(call.function.name, "get_weather");
  checkWeatherArgs(call.function.arguments);

  const back = await client.chat.completions.create({
    model: "tiny-qwen2",
    messages: [...messages, m, { role: "tool", tool_call_id: call.id, content: "18 C and sunny" }],
    tools: [weather],
    max_tokens: 16,
    seed: 1,
  });
  assert.ok(["stop", "length", "tool_calls"].includes(back.choices[0].finish_reason));
});

test("tool_choice auto: content or well-formed calls", async () => {
  for (let seed = 1; seed <= 4; seed++) {
    const r = await client.chat.completions.create({
      model: "tiny-qwen2", messages: [{ role: "user", content: "Weather in Oslo?" }], tools: [weather], tool_choice: "auto", max_tokens: 24, seed,
    });
    const m = r.choices[0].message;
    if (m.tool_calls?.length) {
      assert.equal(r.choices[0].finish_reason, "tool_calls");
      for (const c of m.tool_calls) JSON.parse(c.function.arguments);
    } else {
      assert.equal(typeof m.content, "string");
      assert.ok(!m.content.includes("<tool_call>") || r.choices[0].finish_reason === "length");
    }
  }
});

test("named tool_choice, streamed: the SDK assembles the deltas", async () => {
  const time = {
    type: "function",
    function: {
      name: "get_time",
      parameters: { type: "object", properties: { zone: { enum: ["utc", "local"] } }, required: ["zone"], additionalProperties: false },
    },
  };
  let done;
  for (let seed = 1; seed <= 8 && !done; seed++) {
    const stream = client.chat.completions.stream({
      model: "tiny-qwen2",
      messages: [{ role: "user", content: "What time is it?" }],
      tools: [weather, time],
      tool_choice: { type: "function", function: { name: "get_time" } },
      max_tokens: 150,
      seed,
    });
    const names = [];
    stream.on("tool_calls.function.arguments.done", (e) => names.push(e.name));
    const final = await stream.finalChatCompletion();
    if (final.choices[0].finish_reason === "length") continue;
    done = final;
    assert.equal(final.choices[0].finish_reason, "tool_calls");
    assert.ok(names.length >= 1);
  }
  assert.ok(done, "every seed ran into max_tokens");
  const calls = done.choices[0].message.tool_calls;
  assert.ok(calls.length >= 1);
  for (const c of calls) {
    assert.equal(c.function.name, "get_time");
    assert.ok(["utc", "local"].includes(JSON.parse(c.function.arguments).zone));
    assert.match(c.id, /^call_/);
  }
  assert.ok(!(done.choices[0].message.content ?? "").includes("<tool_call>"));
});

test("parallel tool calls: several calls with their own ids and indices", async () => {
  let most = 0;
  for (let seed = 1; seed <= 10 && most < 2; seed++) {
    const r = await client.chat.completions.create({
      model: "tiny-qwen2",
      messages: [{ role: "user", content: "Weather in Paris and in Rome?" }],
      tools: [weather],
      tool_choice: "required",
      parallel_tool_calls: true,
      max_tokens: 200,
      seed,
    });
    if (r.choices[0].finish_reason !== "tool_calls") continue;
    const calls = r.choices[0].message.tool_calls;
    for (const c of calls) checkWeatherArgs(c.function.arguments);
    assert.equal(new Set(calls.map((c) => c.id)).size, calls.length);
    most = Math.max(most, calls.length);
  }
  assert.ok(most >= 2, `no answer had two calls (most: ${most})`);
});
