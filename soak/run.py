#!/usr/bin/env python3
"""`make soak`: mixed load against one `wasi-serve` for about ten minutes,
looking for slow leaks.

One host serves the test guest, configured as a user would (access log on,
stderr to a file), with limits low enough that the misbehaving requests hit
them. Load threads send, side by side and until the time is up:

- greetings on keep-alive connections, and 404s;
- traps, guests interrupted at the request timeout, guests over the memory
  limit;
- 1 MiB request bodies echoed back, 4 MB response bodies;
- slow clients (a head sent byte by byte, a body read slowly), and clients
  that drop the connection halfway through a request or a response body;
- HTTP/2, 40 streams at a time on one connection;
- a reload every 30 s (SIGHUP), alternating the served file between the
  0.2 and the 0.3 test guests, which answer alike; a shorter run reloads
  more often, 16 times in all, so that its warm-up holds as many reloads.

Every second the host's RSS, open file descriptors and threads are sampled.
The first two minutes of load are a warm-up: RSS climbs while each engine's
instance pool and allocator settle, and only once each guest has served
twice does it level off. The run fails if RSS at the end of the load (mean
of its last 10 s) is above 1.1x the highest RSS of the first minute after
the warm-up, if fds or threads do not return to their idle baseline
within a minute once the load stops, or if any request that should have
been answered was not answered as expected. It writes `report.md` and
`soak.svg` to `--out` (default `target/soak`); the server's log is kept
there only if the run fails.

Bounded: the load stops after `--seconds` (default 600, warm-up included;
then a minute of cool-down at most), every socket has a timeout, and the server
is killed on the way out whatever happens.
"""

import argparse
import collections
import datetime
import http.client
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from harness import ROOT, TARGET, WASI_SERVE, free_port  # noqa: E402

# The served file alternates between these two on each reload.
GUESTS = [
    TARGET / "wasm32-wasip2/release/test_guest.wasm",
    TARGET / "wasm32-wasip2/release/test_guest_p3.wasm",
]

FLAGS = ["--request-timeout", "1s", "--max-memory", "32MiB", "--max-request-body", "2MiB"]
RELOAD_EVERY = 30
# Reloads in a run shorter than 16 x RELOAD_EVERY: its warm-up (a quarter of
# it) then still serves each guest twice, as the ten-minute run's does.
RELOADS_AT_LEAST = 16
# The first part of the load, left out of the RSS comparison (see main).
WARM_UP = 120
SOCKET_TIMEOUT = 30
UPLOAD = b"u" * (1 << 20)
STREAM = 4_000_000
H2_STREAMS = 40


class Tally:
    """Outcomes per kind of request: expected ones, and the others with a
    sample of what went wrong."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ok = collections.Counter()
        self.bad = collections.Counter()
        self.examples = {}

    def record(self, kind: str, good: bool, detail: str = "") -> None:
        with self.lock:
            if good:
                self.ok[kind] += 1
            else:
                self.bad[kind] += 1
                self.examples.setdefault(kind, detail)

    def total(self) -> int:
        with self.lock:
            return sum(self.ok.values()) + sum(self.bad.values())


def http1(port: int) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=SOCKET_TIMEOUT)


def expect(tally: Tally, conn, kind, method, path, status, body=None, send=None):
    """One request on `conn`, checked. Returns the connection to go on with
    (a new one if the server closed it or it failed)."""
    try:
        conn.request(method, path, body=send)
        response = conn.getresponse()
        got = response.read()
        good = response.status == status and (body is None or got == body)
        tally.record(kind, good, f"{method} {path}: {response.status} {got[:60]!r}")
        if response.getheader("connection", "").lower() == "close":
            conn.close()
            return None
        return conn
    except Exception as err:  # noqa: BLE001 - any failure is an outcome
        tally.record(kind, False, f"{method} {path}: {err!r}")
        conn.close()
        return None


def keep_alive(port, tally, stop, kind, requests, pause=0.0):
    """Sends `requests` (method, path, status, body, upload) in turn on a
    keep-alive connection until `stop`, reconnecting when needed."""
    conn = None
    i = 0
    while not stop.is_set():
        method, path, status, body, upload = requests[i % len(requests)]
        i += 1
        conn = expect(tally, conn or http1(port), kind, method, path, status, body, upload)
        if pause:
            stop.wait(pause)


def greetings(port, tally, stop, worker):
    requests = [
        ("GET", f"/soak-{worker}-{n}", 200, f"Howdy, soak-{worker}-{n}!".encode(), None)
        for n in range(50)
    ]
    requests.append(("GET", "/status/404", 404, b"status 404", None))
    keep_alive(port, tally, stop, "greeting or 404", requests)


def failures(port, tally, stop):
    keep_alive(
        port,
        tally,
        stop,
        "trap, timeout or memory limit",
        [
            ("GET", "/trap", 500, b"500: Internal Server Error", None),
            ("GET", "/alloc", 500, b"500: Internal Server Error", None),
            ("GET", "/loop", 504, b"504: Gateway Timeout", None),
            ("GET", "/sleep/5000", 504, b"504: Gateway Timeout", None),
        ],
        pause=0.5,
    )


def big_bodies(port, tally, stop):
    keep_alive(
        port,
        tally,
        stop,
        "big body",
        [
            ("POST", "/echo", 200, UPLOAD, UPLOAD),
            ("GET", f"/stream/{STREAM}", 200, b"x" * STREAM, None),
        ],
        pause=0.1,
    )


def raw(port) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)


def slow_clients(port, tally, stop):
    """A head sent a byte at a time, then a 200 kB body read 4 KiB at a
    time."""
    while not stop.is_set():
        try:
            with raw(port) as s:
                for byte in b"GET /stream/200000 HTTP/1.1\r\nHost: soak\r\n\r\n":
                    s.sendall(bytes([byte]))
                    time.sleep(0.02)
                got = b""
                while not got.endswith(b"x" * 200_000):
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
                    time.sleep(0.005)
                good = got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"x" * 200_000)
                tally.record("slow client", good, repr(got[:60]))
        except Exception as err:  # noqa: BLE001
            tally.record("slow client", False, repr(err))


def dropped_connections(port, tally, stop):
    """Uploads and downloads abandoned halfway."""
    while not stop.is_set():
        try:
            with raw(port) as s:
                s.sendall(b"POST /echo HTTP/1.1\r\nHost: soak\r\nContent-Length: 1048576\r\n\r\n")
                s.sendall(UPLOAD[:100_000])
            with raw(port) as s:
                s.sendall(f"GET /stream/{STREAM} HTTP/1.1\r\nHost: soak\r\n\r\n".encode())
                s.recv(65536)
            tally.record("dropped mid-body", True)
        except Exception as err:  # noqa: BLE001
            tally.record("dropped mid-body", False, repr(err))
        stop.wait(0.05)


def http2(port, tally, stop):
    """`H2_STREAMS` requests at a time, multiplexed on one HTTP/2
    connection (prior knowledge), answers and bodies checked."""
    import h2.config  # noqa: PLC0415 - from the soak's own venv
    import h2.connection  # noqa: PLC0415
    import h2.events  # noqa: PLC0415

    expected = {f"/h2-{n}": (200, f"Howdy, h2-{n}!".encode()) for n in range(H2_STREAMS - 4)}
    expected.update(
        {
            "/status/404": (404, b"status 404"),
            "/trap": (500, b"500: Internal Server Error"),
            "/stream/300000": (200, b"x" * 300_000),
            "/echo": (200, b""),
        }
    )
    paths = list(expected)
    config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
    while not stop.is_set():
        try:
            with raw(port) as s:
                conn = h2.connection.H2Connection(config)
                conn.initiate_connection()
                for i, path in enumerate(paths):
                    headers = [(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", "soak")]
                    conn.send_headers(1 + 2 * i, headers, end_stream=True)
                s.sendall(conn.data_to_send())
                status, bodies, ended = {}, collections.defaultdict(bytes), set()
                while len(ended) < len(paths):
                    data = s.recv(65536)
                    if not data:
                        break
                    for event in conn.receive_data(data):
                        if isinstance(event, h2.events.ResponseReceived):
                            status[event.stream_id] = int(dict(event.headers)[":status"])
                        elif isinstance(event, h2.events.DataReceived):
                            bodies[event.stream_id] += event.data
                            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                        elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                            ended.add(event.stream_id)
                    s.sendall(conn.data_to_send())
                conn.close_connection()
                s.sendall(conn.data_to_send())
            for i, path in enumerate(paths):
                got = (status.get(1 + 2 * i), bodies[1 + 2 * i])
                tally.record("HTTP/2", got == expected[path], f"{path}: {got[0]} {got[1][:60]!r}")
        except Exception as err:  # noqa: BLE001
            tally.record("HTTP/2", False, repr(err))


def swap(source: Path, served: Path) -> None:
    """Replaces the served file at once (a reader never sees half of it)."""
    staged = served.with_suffix(".next")
    shutil.copyfile(source, staged)
    os.replace(staged, served)


def sample(pid: int) -> tuple[float, int, int]:
    """RSS (MiB), open fds, threads of `pid`."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024
    threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))
    return rss, len(os.listdir(f"/proc/{pid}/fd")), threads


def wait_until_serving(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"soak: wasi-serve exited with {proc.returncode}")
        try:
            conn = http1(port)
            conn.request("GET", "/ready")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("soak: wasi-serve did not answer within 120 s")


def svg(samples, load_start, load_end, reloads) -> str:
    """Three stacked panels (RSS, fds, threads) against time, the load
    window shaded and the reloads marked."""
    width, panel, left, gap = 760, 150, 70, 40
    end = samples[-1][0] or 1
    height = 3 * (panel + gap) + 30
    x = lambda t: left + (width - left - 20) * t / end  # noqa: E731
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    for row, (name, column, color) in enumerate(
        [("RSS (MiB)", 1, "#c0392b"), ("open fds", 2, "#2471a3"), ("threads", 3, "#1e8449")]
    ):
        top = 20 + row * (panel + gap)
        values = [s[column] for s in samples]
        high = max(values) * 1.15 or 1
        y = lambda v: top + panel - panel * v / high  # noqa: E731, B023
        out.append(
            f'<rect x="{x(load_start):.1f}" y="{top}" width="{x(load_end) - x(load_start):.1f}" '
            f'height="{panel}" fill="#f2f3f4"/>'
        )
        for t in reloads:
            out.append(
                f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" y2="{top + panel}" '
                'stroke="#d5d8dc" stroke-dasharray="3,3"/>'
            )
        out.append(
            f'<line x1="{left}" x2="{width - 20}" y1="{top + panel}" y2="{top + panel}" stroke="black"/>'
        )
        out.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + panel}" stroke="black"/>')
        for tick in (0, high / 2, high / 1.15):
            out.append(
                f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:.0f}</text>'
            )
        points = " ".join(f"{x(s[0]):.1f},{y(s[column]):.1f}" for s in samples)
        out.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        out.append(f'<text x="{left + 6}" y="{top + 14}" font-weight="bold">{name}</text>')
    for minute in range(0, int(end) + 1, 60):
        out.append(
            f'<text x="{x(minute):.1f}" y="{height - 8}" text-anchor="middle">{minute // 60} min</text>'
        )
    out.append(
        f'<text x="{width - 20}" y="14" text-anchor="end" fill="#566573">'
        "shaded: load · dashed: reloads</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=600, help="how long the load runs")
    parser.add_argument("--out", type=Path, default=TARGET / "soak")
    args = parser.parse_args()
    for needed in (WASI_SERVE, *GUESTS):
        if not needed.exists():
            raise SystemExit(f"soak: {needed} is missing; run `make build` first")
    args.out.mkdir(parents=True, exist_ok=True)
    log_path = args.out / "server.log"
    port = free_port()
    cache = args.out / "cache"
    served = args.out / "guest.wasm"
    shutil.copyfile(GUESTS[0], served)
    argv = [str(WASI_SERVE), "--addr", f"127.0.0.1:{port}", "--cache-dir", str(cache), *FLAGS, str(served)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    try:
        return soak(args, proc, port, log_path, argv)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def soak(args, proc, port, log_path, argv) -> int:
    wait_until_serving(port, proc)
    began = time.monotonic()
    samples = []  # (seconds, rss MiB, fds, threads)

    def take():
        samples.append((time.monotonic() - began, *sample(proc.pid)))

    # Idle baseline, after one request of every kind has warmed the host.
    tally = Tally()
    for path in ("/warm", "/trap", "/status/404"):
        expect(tally, http1(port), "first requests", "GET", path, {"/warm": 200, "/trap": 500}.get(path, 404))
    for _ in range(5):
        take()
        time.sleep(1)
    base_fds = min(s[2] for s in samples)
    base_threads = min(s[3] for s in samples)

    stop = threading.Event()
    workers = [threading.Thread(target=greetings, args=(port, tally, stop, n)) for n in range(2)]
    workers += [
        threading.Thread(target=target, args=(port, tally, stop))
        for target in (failures, big_bodies, slow_clients, dropped_connections, http2)
    ]
    load_start = time.monotonic() - began
    for worker in workers:
        worker.start()
    reloads = []
    reload_every = min(RELOAD_EVERY, args.seconds / RELOADS_AT_LEAST)
    next_reload = load_start + reload_every
    while time.monotonic() - began < load_start + args.seconds:
        if proc.poll() is not None:
            print(f"soak: wasi-serve exited with {proc.returncode} under load", file=sys.stderr)
            return 1
        take()
        now = time.monotonic() - began
        if now >= next_reload:
            swap(GUESTS[(len(reloads) + 1) % 2], Path(argv[-1]))
            proc.send_signal(signal.SIGHUP)
            reloads.append(now)
            next_reload += reload_every
        progress = (
            f"soak: {now - load_start:4.0f}/{args.seconds} s, {tally.total()} requests, "
            f"RSS {samples[-1][1]:.1f} MiB, {samples[-1][2]} fds, {samples[-1][3]} threads"
        )
        # One line rewritten in place on a terminal; a line every 30 s in a log.
        if sys.stdout.isatty():
            print(f"\r{progress}", end="", flush=True)
        elif len(samples) % 30 == 0:
            print(progress, flush=True)
        time.sleep(1)
    stop.set()
    load_end = time.monotonic() - began
    for worker in workers:
        worker.join(SOCKET_TIMEOUT + 5)
    if sys.stdout.isatty():
        print()

    # Cool-down: fds and threads back to the idle baseline within a minute.
    settled = None
    while time.monotonic() - began < load_end + 60:
        take()
        if settled is None and samples[-1][2] <= base_fds and samples[-1][3] <= base_threads:
            settled = samples[-1][0] - load_end
        if settled is not None and samples[-1][0] - load_end >= settled + 5:
            break
        time.sleep(1)

    # Measured from the end of the warm-up: by then each test guest has been
    # served twice (four reloads), and the pools of both engines are warm.
    warm_up = min(WARM_UP, args.seconds / 4)
    load = [s for s in samples if load_start + warm_up <= s[0] <= load_end]
    first_minute = [s[1] for s in load if s[0] <= load_start + warm_up + min(60, args.seconds / 4)]
    last = [s[1] for s in load[-10:]]
    rss_first, rss_end = max(first_minute), statistics.mean(last)
    after = samples[-1]
    problems = []
    if rss_end > 1.1 * rss_first:
        problems.append(f"RSS grew: {rss_end:.1f} MiB at the end, {rss_first:.1f} MiB in the first minute")
    if settled is None:
        problems.append(
            f"fds/threads did not return to {base_fds}/{base_threads} within 60 s "
            f"(at {after[2]}/{after[3]})"
        )
    wrong = sum(tally.bad.values())
    if wrong:
        problems.append(f"{wrong} requests not answered as expected")
    reload_lines = len(re.findall(rb"component reloaded", log_path.read_bytes()))
    if reload_lines != len(reloads):
        problems.append(f"{len(reloads)} reloads asked for, {reload_lines} done")

    report = [
        "# Soak run",
        "",
        f"- When: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"{os.cpu_count()} CPUs; load for {args.seconds} s, the first {warm_up:.0f} s of it a warm-up.",
        f"- Command: `{' '.join(['wasi-serve', *argv[1:-1]]).replace(str(ROOT) + '/', '')} "
        "guest.wasm`, stderr to a file (access log on).",
        f"- Reloads: {len(reloads)} SIGHUPs, each swapping the 0.2 and 0.3 test guests; "
        f"{reload_lines} logged as `component reloaded`.",
        f"- Verdict: **{'pass' if not problems else 'FAIL'}**"
        + ("" if not problems else ": " + "; ".join(problems)),
        "",
        "| requests | as expected | not |",
        "| --- | ---: | ---: |",
    ]
    for kind in sorted(set(tally.ok) | set(tally.bad)):
        report.append(f"| {kind} | {tally.ok[kind]:,} | {tally.bad[kind]:,} |")
    report += [
        f"| **all** | **{sum(tally.ok.values()):,}** | **{wrong:,}** |",
        "",
        "| measure | idle before | first minute after the warm-up (max) | end of load | after the load |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| RSS (MiB) | {samples[0][1]:.1f} | {rss_first:.1f} | {rss_end:.1f} (×{rss_end / rss_first:.2f}) "
        f"| {after[1]:.1f} |",
        f"| open fds | {base_fds} | {max(s[2] for s in load[: len(first_minute)])} "
        f"| {load[-1][2]} | {after[2]} |",
        f"| threads | {base_threads} | {max(s[3] for s in load[: len(first_minute)])} "
        f"| {load[-1][3]} | {after[3]} |",
        "",
        "![RSS, open fds and threads over the run](soak.svg)",
        "",
        "fds and threads "
        + (
            f"were back at the idle baseline {settled:.0f} s after the load stopped."
            if settled is not None
            else "did not return to the idle baseline."
        ),
    ]
    for kind, example in sorted(tally.examples.items()):
        report.append(f"\nFirst unexpected {kind}: `{example}`")
    (args.out / "report.md").write_text("\n".join(report) + "\n")
    (args.out / "soak.svg").write_text(svg(samples, load_start, load_end, reloads))
    (args.out / "samples.csv").write_text(
        "seconds,rss_mib,fds,threads\n"
        + "".join(f"{t:.1f},{rss:.1f},{fds},{threads}\n" for t, rss, fds, threads in samples)
    )
    print("\n".join(report))
    print(f"\nsoak: wrote {args.out / 'report.md'} and {args.out / 'soak.svg'}")
    if problems:
        print(f"soak: FAILED; the server's log is {log_path}", file=sys.stderr)
        return 1
    log_path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
