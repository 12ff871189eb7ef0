#!/usr/bin/env python3
"""`make bench`: wasi-serve against its references, side by side in one run.

Servers, each answering GET /World with "Hello, World!":
  wasi-serve      this repository's host + greeter.wasm (fresh instance per
                  request), with its defaults: an access line per request
  wasi-serve, no access log   the same without it, for its cost
  wasi-serve, 0.3 the same host with greeter_p3.wasm
  visits, SQLite  the same host with the example guest visits.wasm, which
                  adds one `wasi:keyvalue` increment per request, committed
                  to an SQLite file (`--keyvalue`) before it answers
  wasmtime serve  the reference wasi:http host, same greeter.wasm (its default:
                  fresh instance per request); wasmtime 49 from PyPI
  wasmtime serve 50.0.1   the same from the wasmtime release wasi-serve is
                  built on, when `make wasmtime-50` has built it
  wasmtime serve, 0.3   greeter_p3.wasm, a fresh instance per request;
                  ", reuse": its default, up to 128 requests an instance
  aiohttp         the original Python program's behaviour
  hello-native    tokio + hyper with no WebAssembly: the physical ceiling

Every server runs with its stderr going to a file. HTTP/2: h2load against
wasi-serve and hello-native. The server runs pinned to CPU 0 and the load
generator (wrk, h2load) to CPU 1. Rounds
are interleaved (A B C D, A B C D, ...) so that drift on this shared machine
hits every server alike; each figure is the median over rounds with its
min-max. The whole run is bounded (--max-seconds) and every process it starts
is stopped on the way out.

Writes docs/benchmarks.md and docs/bench.svg unless --no-report.
"""

import argparse
import datetime
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from harness import (  # noqa: E402
    GREETER, GREETER_P3, HELLO_NATIVE, LOAD_CPU, VISITS, ROOT, TARGET, WASI_SERVE, cpu_seconds,
    free_port, peak_rss_mib, running, setup, sh, start, stop,
)

# `wasmtime serve` of the wasmtime release wasi-serve is built on, if `make
# wasmtime-50` has built it (about 10 minutes, so not done here): the same
# engine, so the two hosts' designs are compared without a release between.
WASMTIME_50 = TARGET / "wasmtime-50/bin/wasmtime"

# The same server as "wasi-serve" without its access log.
QUIET = "wasi-serve, no access log"
# HTTP/2 throughput (h2load: 4 connections, 16 streams each) of these two.
H2_SERVERS = ["wasi-serve", "hello-native"]

def to_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def wrk(port: int, connections: int, seconds: int) -> dict[str, float]:
    out = sh(
        "taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
        "--latency", f"http://127.0.0.1:{port}/World",
    )
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    return {
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": to_ms(latency["50"]),
        "p99": to_ms(latency["99"]),
    }


def h2load(port: int, seconds: int) -> float:
    """Requests/s over HTTP/2 (cleartext, prior knowledge): 4 connections
    with 16 streams each, 64 requests in flight as with wrk."""
    out = sh("taskset", "-c", LOAD_CPU, "h2load", "-c", "4", "-m", "16", "--warm-up-time", "1",
             "-D", str(seconds), f"http://127.0.0.1:{port}/World")
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    if not done or done.group(1) != done.group(2):
        raise RuntimeError(f"h2load: not every request succeeded:\n{out}")
    return float(re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out).group(1))


def servers(tools: dict[str, Path], cache_dir: Path) -> dict[str, callable]:
    """Each server's command line, given a port."""
    def wasi_serve(log: str | None, component: Path = GREETER, flags: tuple = ()):
        # `env` execs in place: the pid measured is the server's. No RUST_LOG
        # is the default: info, access log included.
        return lambda port, cached=True: [
            "env", *([f"RUST_LOG={log}"] if log else ["-u", "RUST_LOG"]),
            str(WASI_SERVE), "--addr", f"127.0.0.1:{port}", *flags,
            *(["--cache-dir", str(cache_dir)] if cached else ["--no-cache"]), str(component),
        ]

    def wasmtime_serve(binary: Path, component: Path = GREETER, flags: tuple = ()):
        return lambda port, cached=True: [
            str(binary), "serve", *flags, "--addr", f"127.0.0.1:{port}",
            "-C", f"cache={'y' if cached else 'n'}", str(component),
        ]

    # wasmtime serve reuses a WASI 0.3 instance for up to 128 requests by
    # default; this row makes it take a fresh one per request, as wasi-serve
    # always does.
    p3_fresh = ("-Wcomponent-model-async", "-Sp3,http", "--max-instance-reuse-count", "1")

    same_engine = {"wasmtime serve 50.0.1": wasmtime_serve(WASMTIME_50)} if WASMTIME_50.exists() else {}
    return {
        "wasi-serve": wasi_serve(None),
        QUIET: wasi_serve("info,wasi_serve::access=off"),
        "wasmtime serve": wasmtime_serve(tools["wasmtime"]),
        **same_engine,
        "wasi-serve, 0.3": wasi_serve(None, GREETER_P3),
        # The cost of state: the store lives beside the compile cache.
        "visits, SQLite": wasi_serve(None, VISITS, ("--keyvalue", str(cache_dir / "visits.db"))),
        "wasmtime serve, 0.3": wasmtime_serve(tools["wasmtime"], GREETER_P3, p3_fresh),
        "wasmtime serve, 0.3, reuse": wasmtime_serve(tools["wasmtime"], GREETER_P3, p3_fresh[:2]),
        "aiohttp": lambda port, cached=True: [
            str(tools["python"]), str(ROOT / "bench/aiohttp_hello.py"), str(port),
        ],
        "hello-native": lambda port, cached=True: [
            str(HELLO_NATIVE), f"127.0.0.1:{port}",
        ],
    }


def median_range(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def run(args: argparse.Namespace) -> dict:
    tools = setup()
    # The servers' compile caches, removed when the run ends, however it ends.
    with tempfile.TemporaryDirectory(prefix="wasi-serve-bench-cache-") as cache_dir:
        return measure(args, servers(tools, Path(cache_dir)))


def measure(args: argparse.Namespace, commands: dict) -> dict:
    results = {
        name: {"rps": [], "user": [], "sys": [], "p50": [], "p99": [], "rss": [], "cold": [], "h2": []}
        for name in commands
    }
    uncached = {}
    # Cold start without a compile cache (wasm runtimes only), then one
    # launch each to warm the caches the rounds will use.
    for name in (n for n in commands if n.startswith(("wasi-serve", "wasmtime serve")) and n != QUIET):
        port = free_port()
        proc, cold = start(commands[name](port, cached=False), port)
        stop(proc)
        uncached[name] = cold
    for name, command in commands.items():
        port = free_port()
        proc, _ = start(command(port), port)
        stop(proc)

    for round_ in range(args.rounds):
        for name, command in commands.items():
            port = free_port()
            proc, cold = start(command(port), port)
            try:
                wrk(port, args.connections, 1)  # warm-up
                user, system = cpu_seconds(proc)
                load = wrk(port, args.connections, args.seconds)
                user_after, system_after = cpu_seconds(proc)
                single = wrk(port, 1, args.latency_seconds)
                if name in H2_SERVERS:
                    results[name]["h2"].append(h2load(port, args.seconds))
                rss = peak_rss_mib(proc)
            finally:
                stop(proc)
            entry = results[name]
            entry["rps"].append(load["rps"])
            entry["user"].append((user_after - user) * 1e6 / load["requests"])
            entry["sys"].append((system_after - system) * 1e6 / load["requests"])
            entry["p50"].append(single["p50"])
            entry["p99"].append(single["p99"])
            entry["rss"].append(rss)
            entry["cold"].append(cold * 1000)
            print(
                f"round {round_ + 1}/{args.rounds} {name:22} {load['rps']:>10.0f} req/s"
                f"  p50 {single['p50']:.3f} ms  p99 {single['p99']:.3f} ms"
                f"  rss {rss:.1f} MiB  cold {cold * 1000:.1f} ms",
                flush=True,
            )
    return {"results": results, "uncached": {k: v * 1000 for k, v in uncached.items()}}


def table(data: dict) -> list[list[str]]:
    results, uncached = data["results"], data["uncached"]
    ref = {k: statistics.median(v) for k, v in results["wasmtime serve"].items() if v}
    same = results.get("wasmtime serve 50.0.1")
    ref50 = statistics.median(same["rps"]) if same else None
    rows = []
    for name, entry in results.items():
        rps, lo, hi = median_range(entry["rps"])
        p50 = statistics.median(entry["p50"])
        p99 = statistics.median(entry["p99"])
        rss = statistics.median(entry["rss"])
        cold = statistics.median(entry["cold"])
        rows.append([
            name,
            f"{rps:,.0f} ({lo:,.0f}–{hi:,.0f})",
            f"{rps / ref['rps']:.2f}×" + (f" ({rps / ref50:.2f}× vs 50.0.1)" if ref50 else ""),
            f"{statistics.median(entry['user']):.1f} + {statistics.median(entry['sys']):.1f}",
            f"{p50:.3f} ({p50 / ref['p50']:.2f}×)",
            f"{p99:.3f} ({p99 / ref['p99']:.2f}×)",
            f"{rss:.1f} ({rss / ref['rss']:.2f}×)",
            f"{cold:.1f} ({cold / ref['cold']:.2f}×)",
            f"{uncached[name]:.1f}" if name in uncached else "—",
        ])
    return rows


HEADER = [
    "server", "req/s, 64 conns: median (min–max)", "vs wasmtime serve", "µs CPU/req: user + sys",
    "p50 ms, 1 conn", "p99 ms, 1 conn", "peak RSS MiB", "cold start ms (cached)",
    "cold start ms (no cache)",
]


def h2_table(data: dict) -> list[str]:
    """HTTP/2 throughput, against native hyper's."""
    results = data["results"]
    if not all(results[name]["h2"] for name in H2_SERVERS):
        return []
    native = statistics.median(results["hello-native"]["h2"])
    lines = [
        "| HTTP/2, h2load: 4 connections × 16 streams | req/s: median (min–max) | vs native hyper |",
        "| --- | --- | --- |",
    ]
    for name in H2_SERVERS:
        rps, lo, hi = median_range(results[name]["h2"])
        lines.append(f"| {name} | {rps:,.0f} ({lo:,.0f}–{hi:,.0f}) | {rps / native:.2f}× |")
    return lines


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + " --- |" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def svg(data: dict) -> str:
    """A bar chart of throughput, median with min-max whiskers."""
    results = data["results"]
    names = list(results)
    medians = [statistics.median(results[n]["rps"]) for n in names]
    highs = [max(results[n]["rps"]) for n in names]
    lows = [min(results[n]["rps"]) for n in names]
    width, bar_h, gap, left, top = 760, 34, 14, 170, 40
    scale = (width - left - 110) / max(highs)
    height = top + len(names) * (bar_h + gap) + 30
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="13">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="22" font-size="15" font-weight="bold">'
        "Requests per second, one server core, 64 connections (median, min–max)</text>",
    ]
    colors = {"wasi-serve": "#2a7ab9", "wasi-serve, access log": "#7fb0d8", "wasmtime serve": "#8a8a8a",
              "wasmtime serve 50.0.1": "#b0b0b0", "aiohttp": "#c9a227",
              "hello-native": "#4f9a5a"}
    for i, name in enumerate(names):
        y = top + i * (bar_h + gap)
        w = medians[i] * scale
        out.append(f'<text x="{left - 8}" y="{y + bar_h / 2 + 5}" text-anchor="end">{name}</text>')
        out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                   f'fill="{colors.get(name, "#555")}"/>')
        mid = y + bar_h / 2
        out.append(f'<line x1="{left + lows[i] * scale:.1f}" x2="{left + highs[i] * scale:.1f}" '
                   f'y1="{mid}" y2="{mid}" stroke="black"/>')
        out.append(f'<text x="{left + highs[i] * scale + 8:.1f}" y="{mid + 5}">'
                   f'{medians[i]:,.0f}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# The criterion benchmarks of `bench/instance`, as `make bench` runs them.
CRITERION = (
    "instantiate + handle + drop (greeter)",
    "phase: store",
    "phase: store + instance, never called",
    "phase: store + instance + handler, wasmtime only",
)


def in_process(started: float) -> list[tuple[str, float]]:
    """The criterion figures `make bench` measured just before this run
    (median ns per iteration). A figure older than the binaries it measured,
    or from more than an hour before this run, is left out."""
    built = max(WASI_SERVE.stat().st_mtime, GREETER.stat().st_mtime)
    figures = []
    for estimates in sorted((TARGET / "criterion").glob("*/new/estimates.json")):
        measured = estimates.stat().st_mtime
        if measured < built or measured < started - 3600:
            continue
        name = json.loads((estimates.parent / "benchmark.json").read_text())["full_id"]
        if name not in CRITERION:
            continue
        median = json.loads(estimates.read_text())["median"]["point_estimate"]
        figures.append((name, median))
    # The whole request first, then its phases from the smallest up.
    figures.sort(key=lambda figure: (figure[0].startswith("phase"), figure[1]))
    return figures


def versions(tools: dict[str, Path]) -> dict[str, str]:
    def first_line(*argv: str) -> str:
        try:
            return sh(*argv).strip().splitlines()[0]
        except (OSError, subprocess.CalledProcessError):
            return "unknown"
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}",
        "rustc": first_line("rustc", "--version"),
        "wasmtime CLI": first_line(str(tools["wasmtime"]), "--version"),
        **({"wasmtime CLI, same engine": first_line(str(WASMTIME_50), "--version")}
           if WASMTIME_50.exists() else {}),
        "python": first_line(str(tools["python"]), "--version"),
        "aiohttp": first_line(str(tools["python"]), "-c", "import aiohttp; print(aiohttp.__version__)"),
        "wrk": subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("[")[0].strip(),
        "greeter.wasm": f"{GREETER.stat().st_size:,} bytes",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="throughput run per server per round")
    parser.add_argument("--latency-seconds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--max-seconds", type=int, default=600, help="hard bound on the whole run")
    parser.add_argument("--no-report", action="store_true")
    parser.add_argument("--from", dest="from_json", type=Path, help="report on a run saved before")
    args = parser.parse_args()

    def out_of_time(*_):
        raise TimeoutError(f"the benchmark ran past --max-seconds={args.max_seconds}")

    # Every server runs in the environment a service gets, not a developer's
    # shell: RUST_BACKTRACE there makes wasmtime-based servers capture a
    # stack backtrace for errors they build on the request path.
    for name in ("RUST_BACKTRACE", "RUST_LIB_BACKTRACE"):
        os.environ.pop(name, None)

    started = time.time()
    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(args.max_seconds)
    try:
        data = json.loads(args.from_json.read_text()) if args.from_json else run(args)
        tools = setup()
    finally:
        for proc in list(running):
            stop(proc)
        signal.alarm(0)

    # The measurements first, so a report can be made again from them
    # (`--from target/bench.json`) without measuring again.
    (TARGET / "bench.json").write_text(json.dumps(data))
    rows = table(data)
    print()
    print(markdown(rows))
    h2 = h2_table(data)
    if h2:
        print()
        print("\n".join(h2))
    figures = in_process(started)
    criterion = ["| in-process, no network (criterion) | median µs |", "| --- | --- |"]
    criterion += [f"| {name} | {ns / 1000:.2f} |" for name, ns in figures]
    if figures:
        print()
        print("\n".join(criterion))
    if args.no_report:
        return 0
    info = versions(tools)
    command = " ".join(["make bench"] + ([] if args.rounds == 3 else [f"ROUNDS={args.rounds}"]))
    report = [
        "# Benchmark: one recorded run of `make bench`",
        "",
        "Produced by `bench/run.py`; numbers drift between runs on this shared machine, so",
        "compare within one run only. Each server is pinned to CPU 0 and wrk to CPU 1;",
        f"{args.rounds} interleaved rounds; {args.seconds} s at {args.connections} connections for",
        f"throughput, {args.latency_seconds} s at 1 connection for latency. Ratios are against",
        "`wasmtime serve` in the same run. µs CPU/req is the server's user and system CPU time",
        "(from `/proc/PID/stat`) over the throughput run, divided by the requests answered.",
        "Every server runs with its defaults and its stderr going to a file, as users run it:",
        "`wasi-serve` writes an access line per request, which no other server here does;",
        f"`{QUIET}` is the same host with `RUST_LOG=info,wasi_serve::access=off`.",
        "`wasmtime serve, 0.3` takes a fresh instance per request (`--max-instance-reuse-count 1`),",
        "as wasi-serve always does; `wasmtime serve, 0.3, reuse` is its default (an instance serves",
        "up to 128 requests, so requests are not isolated from each other).",
        "Cold start: process launch to the first 200 response.",
        "`wasi-serve` and `hello-native` are the builds `make build` leaves (Cargo profile `dist`:",
        "whole-program optimisation, guided by a profile), the ones users run; so is the in-process benchmark.",
        "",
        markdown(rows),
        "",
        *((h2 + [""]) if h2 else []),
        "![throughput](bench.svg)",
        "",
        *((["Per request in-process (`cargo bench -p instance-bench`, run by `make bench` just",
            "before): the whole of `Proxy::handle`, then its phases; see docs/performance.md.",
            "", *criterion, ""]) if figures else []),
        "| | |",
        "| --- | --- |",
        *[f"| {k} | {v} |" for k, v in info.items()],
        f"| command | `{command}` |",
        "",
    ]
    (ROOT / "docs").mkdir(exist_ok=True)
    (ROOT / "docs/benchmarks.md").write_text("\n".join(report))
    (ROOT / "docs/bench.svg").write_text(svg(data))
    print("\nwrote docs/benchmarks.md and docs/bench.svg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
