"""Load check for `latentkit serve`: 50 concurrent clients on loopback for a bounded time.

The server runs as its own process (`latentkit serve`) on a tiny random-weight model (the test
suite's), so the figures measure the server - queue, JSON, files, event loop - rather than the
network. Each client loops over: generate and wait for it (2 steps, a 16 px image), fetch the
image, read its recipe, read the model info. Generation runs one at a time (one worker, the
default), so its latency includes the wait behind the other 49 clients. Reports requests/s,
p50/p99 latency per request kind, errors (must be 0) and the server's RSS before and after.

    python benchmarks/server_load.py [--clients 50] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def client(
    http: httpx.AsyncClient, k: int, stop: float, lat: dict[str, list[float]], errors: list[str]
) -> None:
    i = 0
    while time.monotonic() < stop:
        body = {"prompt": f"thing {(k + i) % 10}", "seed": k * 100_000 + i, "steps": 2}
        image_id = None
        for kind in ("generate", "file", "recipe", "model"):
            start = time.perf_counter()
            try:
                if kind == "generate":
                    r = await http.post("/api/generate?wait=true", json=body)
                    if r.status_code == 200:
                        image_id = r.json()["result"]["images"][0]["id"]
                elif kind == "file":
                    r = await http.get(f"/api/files/{image_id}")
                elif kind == "recipe":
                    r = await http.get(f"/api/files/{image_id}/recipe")
                else:
                    r = await http.get("/api/model")
                if r.status_code >= 400:
                    errors.append(f"{kind} {r.status_code} {r.text[:100]}")
            except httpx.HTTPError as e:
                errors.append(f"{kind} {type(e).__name__}: {e}")
                break
            lat[kind].append(time.perf_counter() - start)
            if image_id is None:
                break
        i += 1


async def load(url: str, clients: int, seconds: float) -> tuple[dict[str, list[float]], list[str]]:
    lat: dict[str, list[float]] = {k: [] for k in ("generate", "file", "recipe", "model")}
    errors: list[str] = []
    # idle connections are dropped by the client before the server's keep-alive timeout, so a
    # request never races the server closing its connection
    limits = httpx.Limits(
        max_connections=clients, max_keepalive_connections=clients, keepalive_expiry=4
    )
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:
        stop = time.monotonic() + seconds
        await asyncio.gather(*(client(http, k, stop, lat, errors) for k in range(clients)))
    return lat, errors


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--port", type=int, default=7871)
    ap.add_argument("--out", default="benchmarks/server_load.json")
    args = ap.parse_args()
    from conftest import tiny_bundle

    from latentkit.families.bundle import save_bundle

    with tempfile.TemporaryDirectory() as tmp:
        model = save_bundle(tiny_bundle(), Path(tmp) / "tiny")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "PYTHONPATH": str(ROOT / "src")}  # fmt: skip
        cmd = [sys.executable, "-m", "latentkit", "serve", "--model", str(model), "--port",
               str(args.port), "--outputs", str(Path(tmp) / "out")]  # fmt: skip
        server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{args.port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/api/model").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            asyncio.run(load(url, 1, 1.0))  # warm up: first prompt encodings, imports
            rss_before = rss_mib(server.pid)
            start = time.perf_counter()
            lat, errors = asyncio.run(load(url, args.clients, args.seconds))
            wall = time.perf_counter() - start
            rss_after = rss_mib(server.pid)
        finally:
            server.terminate()
            server.wait(30)
    total = sum(len(v) for v in lat.values())
    rows = {}
    print(f"{args.clients} clients, {wall:.1f} s, loopback, tiny model, 1 worker, 1 thread")
    print(f"{'request':>9s} {'count':>7s} {'p50 ms':>8s} {'p99 ms':>8s}")
    for kind, values in [*lat.items(), ("all", [x for v in lat.values() for x in v])]:
        ms = np.array(values) * 1000
        rows[kind] = {"count": len(values), "p50_ms": float(np.percentile(ms, 50)),
                      "p99_ms": float(np.percentile(ms, 99))}  # fmt: skip
        print(
            f"{kind:>9s} {len(values):7d} {rows[kind]['p50_ms']:8.1f} {rows[kind]['p99_ms']:8.1f}"
        )
    print(f"requests/s {total / wall:.1f}  generations/s {len(lat['generate']) / wall:.1f}  "
          f"errors {len(errors)}  server RSS {rss_before:.0f} -> {rss_after:.0f} MiB")  # fmt: skip
    for e in errors[:5]:
        print("  error:", e)
    result = {"clients": args.clients, "seconds": wall, "requests": total,
              "requests_per_s": total / wall, "generations_per_s": len(lat["generate"]) / wall,
              "errors": len(errors), "latency": rows, "server_rss_mib_before": rss_before,
              "server_rss_mib_after": rss_after, "server_threads": 1,
              "model": "tests/conftest.py tiny_bundle (16 px, 2 steps)",
              "cpu_cores": os.cpu_count(),
              "load_average_1min_after": os.getloadavg()[0]}  # fmt: skip
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
