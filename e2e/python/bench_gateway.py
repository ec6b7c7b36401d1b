"""Latency of the MCP gateway seen by MCP clients (the official Python SDK), at N concurrent clients.

    bench_gateway.py URL [--clients 20] [--calls 25] [--header NAME=VALUE ...]

Each client opens one MCP session and alternates start_agent_session (async, a fresh session name each time)
with get_agent_session_status on the session it just started. Prints JSON: p50/p99 in milliseconds per tool and
calls per second overall. The times include the client's own work (Python, JSON, HTTP), so they are an upper
bound of the gateway's.
"""

import argparse
import json
import statistics
import time
import uuid

import anyio
import httpx2
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def one_client(url, headers, calls, prefix, latencies, errors):
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0)) as http:
        async with Client(streamable_http_client(url, http_client=http), cache=None) as client:
            for i in range(calls):
                name = f"{prefix}-{i}"
                for tool, args in (
                    ("start_agent_session", {"session_name": name, "prompt": "bench", "async_mode": True}),
                    ("get_agent_session_status", {"session_name": name}),
                ):
                    t0 = time.perf_counter()
                    r = await client.call_tool(tool, args)
                    latencies[tool].append((time.perf_counter() - t0) * 1000)
                    if r.is_error:
                        errors.append(f"{tool}: {r.content[0].text}")


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--calls", type=int, default=25)
    ap.add_argument("--header", action="append", default=[])
    a = ap.parse_args()
    headers = dict(h.split("=", 1) for h in a.header)
    latencies = {"start_agent_session": [], "get_agent_session_status": []}
    errors = []
    run = uuid.uuid4().hex[:6]
    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for c in range(a.clients):
            tg.start_soon(one_client, a.url, headers, a.calls, f"b{run}-{c}", latencies, errors)
    elapsed = time.perf_counter() - t0
    total = sum(len(v) for v in latencies.values())
    out = {
        "clients": a.clients,
        "calls": total,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "calls_per_second": round(total / elapsed, 1),
    }
    for tool, v in latencies.items():
        out[tool] = {
            "p50_ms": round(statistics.median(v), 2),
            "p99_ms": round(percentile(v, 99), 2),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    anyio.run(main)
