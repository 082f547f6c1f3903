#!/usr/bin/env python3
"""Slow clients for benches/slow_clients.sh: N connections that each send the start of a request
header and then one more byte every INTERVAL seconds, never finishing it (slowloris). A
connection the server closes is counted with how long it lived and, with --reopen, replaced, so
that N stay open for the whole run.

Prints one JSON object when done: opened, closed_by_server, refused (connect failed or closed
before the first trickled byte), lifetimes (p50, p99, max seconds) and the peak open count.
Writes the current open count to --status FILE every second (for the driving script)."""

import argparse
import asyncio
import json
import resource
import time

HEAD = b"GET /public/slow HTTP/1.1\r\nHost: localhost\r\nX-Slow: "


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--reopen", action="store_true")
    ap.add_argument("--status", default=None)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    stats = {"opened": 0, "closed_by_server": 0, "refused": 0, "open": 0, "peak_open": 0}
    lifetimes = []
    deadline = time.monotonic() + args.seconds

    async def one(first_delay):
        await asyncio.sleep(first_delay)
        while time.monotonic() < deadline:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
            except OSError:
                stats["refused"] += 1
                await asyncio.sleep(0.5)
                if not args.reopen:
                    return
                continue
            stats["opened"] += 1
            stats["open"] += 1
            stats["peak_open"] = max(stats["peak_open"], stats["open"])
            born = time.monotonic()
            closed = False
            sent = 0
            try:
                writer.write(HEAD)
                await writer.drain()
                while time.monotonic() < deadline:
                    # The server closing shows as EOF on read; wait for it up to one interval.
                    try:
                        data = await asyncio.wait_for(reader.read(1024), args.interval)
                        if not data:
                            closed = True
                            break
                    except asyncio.TimeoutError:
                        pass
                    writer.write(b"a")
                    await writer.drain()
                    sent += 1
            except (ConnectionError, OSError):
                closed = True
            stats["open"] -= 1
            if closed:
                if sent == 0 and time.monotonic() - born < 0.5:
                    stats["refused"] += 1
                else:
                    stats["closed_by_server"] += 1
                    lifetimes.append(time.monotonic() - born)
            writer.close()
            if not args.reopen:
                return

    async def report():
        while time.monotonic() < deadline:
            if args.status:
                with open(args.status, "w") as f:
                    f.write(f"{stats['open']}\n")
            await asyncio.sleep(1)

    # Spread the connects over about two seconds so the listen backlog is not the limit.
    spread = 2.0 / max(args.connections, 1)
    tasks = [asyncio.create_task(one(i * spread)) for i in range(args.connections)]
    tasks.append(asyncio.create_task(report()))
    await asyncio.gather(*tasks, return_exceptions=True)
    lifetimes.sort()

    def pct(p):
        if not lifetimes:
            return None
        return round(lifetimes[min(len(lifetimes) - 1, int(p * len(lifetimes)))], 2)

    out = {k: v for k, v in stats.items() if k != "open"}
    out.update(lifetime_p50=pct(0.5), lifetime_p99=pct(0.99), lifetime_max=pct(1.0))
    print(json.dumps(out))


asyncio.run(main())
