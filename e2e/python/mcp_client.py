"""MCP client of the end-to-end tests: the official MCP Python SDK over streamable HTTP.

Reads a plan (JSON) on stdin and prints one JSON document on stdout:

    plan:   {"url": "http://127.0.0.1:PORT/mcp", "headers": {...}, "mode": "auto" | "legacy",
             "fresh_connections": bool, "steps": [{"op": "list_tools"} | {"op": "call", "tool": NAME, "args": {...}}]}
    output: {"ok": true, "results": [...]}  or  {"ok": false, "error": "..."} when the session could not start.

Each result is {"tools": [{"name", "description", "input_schema"}]} for list_tools, and for a call either
{"is_error": bool, "text": "..."} (a tool result) or {"exception": "..."} (a protocol error, e.g. a refused
request). Calls that fail do not stop the plan: later steps still run.

`fresh_connections` opens a new TCP connection per HTTP request (no keep-alive), as a client behind a
per-connection load balancer would see it.
"""

import json
import sys

import anyio
import httpx2
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client


def tool_text(result) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


async def run(plan: dict) -> dict:
    limits = httpx2.Limits(max_keepalive_connections=0) if plan.get("fresh_connections") else None
    kwargs = {"headers": plan.get("headers") or {}, "timeout": httpx2.Timeout(30.0, read=700.0)}
    if limits is not None:
        kwargs["limits"] = limits
    results = []
    async with httpx2.AsyncClient(**kwargs) as http:
        transport = streamable_http_client(plan["url"], http_client=http)
        async with Client(transport, mode=plan.get("mode", "auto"), cache=None) as client:
            for step in plan["steps"]:
                try:
                    if step["op"] == "list_tools":
                        listed = await client.list_tools()
                        results.append(
                            {
                                "tools": [
                                    {
                                        "name": t.name,
                                        "description": t.description,
                                        "input_schema": t.input_schema,
                                    }
                                    for t in listed.tools
                                ]
                            }
                        )
                    elif step["op"] == "call":
                        r = await client.call_tool(step["tool"], step.get("args") or {})
                        results.append({"is_error": bool(r.is_error), "text": tool_text(r)})
                    else:
                        raise ValueError(f"unknown op {step['op']!r}")
                except Exception as e:  # a refused or failed request: report it, keep going
                    results.append({"exception": f"{type(e).__name__}: {e}"})
    return {"ok": True, "results": results}


def main() -> None:
    plan = json.load(sys.stdin)
    try:
        out = anyio.run(run, plan)
    except BaseException as e:  # the session itself failed (refused initialize, connection error)
        out = {"ok": False, "error": f"{type(e).__name__}: {e}" + describe_group(e)}
    json.dump(out, sys.stdout)


def describe_group(e: BaseException) -> str:
    inner = getattr(e, "exceptions", None)
    if not inner:
        return ""
    return " [" + "; ".join(f"{type(x).__name__}: {x}{describe_group(x)}" for x in inner) + "]"


if __name__ == "__main__":
    main()
