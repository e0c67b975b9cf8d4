"""A small HTTP/1.1 load generator: N keep-alive connections, each posting the same request
back to back for a while; prints one JSON line with throughput and latency percentiles.

Written on raw asyncio streams (under uvloop) so that the client costs as little CPU as
possible: on a two-core machine it shares the cores with the servers it measures, and every
server is measured with this same client.

    python bench/loadgen.py URL BODY_FILE --content-type application/json \\
        --connections 64 --seconds 10 --warmup 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from urllib.parse import urlsplit


async def _connection(host: str, port: int, request: bytes, stop: list[bool],
                      record: list[float], errors: list[int], counting: list[bool]) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while not stop[0]:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            assert reader is not None
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            close = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
                elif name == b"transfer-encoding" and b"chunked" in value.lower():
                    length = -1
            if length > 0:
                await reader.readexactly(length)
            elif length < 0:  # chunked: read chunks to the empty one
                while True:
                    size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                    await reader.readexactly(size + 2)
                    if size == 0:
                        break
            if counting[0]:
                if status == 200:
                    record.append(time.perf_counter() - t0)
                else:
                    errors.append(status)
            if close:
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, ValueError):
            if counting[0]:
                errors.append(0)
            if writer is not None:
                writer.close()
            writer = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


async def run(url: str, body: bytes, content_type: str, connections: int, seconds: float,
              warmup: float, extra_headers: list[str]) -> dict[str, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    headers = [f"POST {parts.path or '/'} HTTP/1.1", f"Host: {host}:{port}",
               f"Content-Type: {content_type}", f"Content-Length: {len(body)}", *extra_headers]
    request = ("\r\n".join(headers) + "\r\n\r\n").encode() + body
    stop, counting = [False], [False]
    record: list[float] = []
    errors: list[int] = []
    tasks = [asyncio.create_task(_connection(host, port, request, stop, record, errors,
                                             counting)) for _ in range(connections)]
    await asyncio.sleep(warmup)
    counting[0] = True
    t0 = time.perf_counter()
    await asyncio.sleep(seconds)
    counting[0] = False
    elapsed = time.perf_counter() - t0
    stop[0] = True
    await asyncio.wait(tasks, timeout=30)
    record.sort()

    def q(p: float) -> float:
        return round(record[min(len(record) - 1, int(p * len(record)))] * 1000, 3) if record \
            else float("nan")

    return {"requests": len(record), "errors": len(errors),
            "rps": round(len(record) / elapsed, 1), "p50_ms": q(0.5), "p99_ms": q(0.99)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("body", type=Path)
    parser.add_argument("--content-type", default="application/json")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--header", action="append", default=[])
    args = parser.parse_args()
    coro = run(args.url, args.body.read_bytes(), args.content_type, args.connections,
               args.seconds, args.warmup, args.header)
    try:
        import uvloop

        result = uvloop.run(coro)
    except ImportError:
        result = asyncio.run(coro)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
