// MCP client of the end-to-end tests: the official TypeScript MCP SDK (@modelcontextprotocol/sdk, pinned in
// package-lock.json) over streamable HTTP, as a person's own client would use it.
//
// Same plan and output as e2e/python/mcp_client.py: reads {"url", "headers", "steps": [{"op": "list_tools"} |
// {"op": "call", "tool", "args"}]} on stdin and prints {"ok": true, "results": [...]} or {"ok": false, "error"}.
// Each call result is {"is_error", "text"}, or {"exception"} for a protocol error; failed calls do not stop the plan.
//
// The SDK is loaded from the directory MCP_TS_ENV names (make typescript-env installs it in .local/typescript).

const { createRequire } = require("node:module");
const path = require("node:path");

const env = process.env.MCP_TS_ENV;
if (!env) {
  console.error("MCP_TS_ENV is not set: it names the directory make typescript-env installed the SDK into");
  process.exit(2);
}
const sdk = createRequire(path.join(env, "package.json"));
const { Client } = sdk("@modelcontextprotocol/sdk/client/index.js");
const { StreamableHTTPClientTransport } = sdk("@modelcontextprotocol/sdk/client/streamableHttp.js");

// Sync mode waits up to 600 s for a session: the SDK's default request timeout (60 s) would give up first.
const CALL_TIMEOUT_MS = 700_000;

function toolText(result) {
  return (result.content || []).map((block) => block.text || "").join("\n");
}

async function run(plan) {
  const transport = new StreamableHTTPClientTransport(new URL(plan.url), {
    requestInit: { headers: plan.headers || {} },
  });
  const client = new Client({ name: "agent-orchestrator-e2e", version: "1.0.0" });
  await client.connect(transport);
  const results = [];
  try {
    for (const step of plan.steps) {
      try {
        if (step.op === "list_tools") {
          const listed = await client.listTools();
          results.push({
            tools: listed.tools.map((t) => ({
              name: t.name,
              description: t.description,
              input_schema: t.inputSchema,
            })),
          });
        } else if (step.op === "call") {
          const r = await client.callTool({ name: step.tool, arguments: step.args || {} }, undefined, {
            timeout: CALL_TIMEOUT_MS,
          });
          results.push({ is_error: Boolean(r.isError), text: toolText(r) });
        } else {
          throw new Error(`unknown op ${step.op}`);
        }
      } catch (e) {
        // A refused or failed request: report it, keep going.
        results.push({ exception: `${e.name}: ${e.message}` });
      }
    }
  } finally {
    await client.close();
  }
  return { ok: true, results };
}

async function main() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const plan = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  let out;
  try {
    out = await run(plan);
  } catch (e) {
    // The session itself failed (refused initialize, connection error).
    out = { ok: false, error: `${e.name}: ${e.message}` };
  }
  process.stdout.write(JSON.stringify(out));
}

main();
