#!/usr/bin/env python3
"""`make toolchains`: wasi:http components from other toolchains under wasi-serve.

The same small handler (GET /{name} greets, POST /echo echoes the body,
anything else is 405) built three ways:
  Python      componentize-py (PyPI), against wasi:http 0.2.0
  JavaScript  componentize-js (npm), against wasi:http 0.2.3
  wstd        Rust with the wstd library, from `make build`
Python and JavaScript are built here from registry packages at every run
(nothing prebuilt is committed; installs are kept in target/toolchains/).
Each component is served by wasi-serve twice with a fresh compile cache:
first with stderr on a pseudo-terminal (spinner drawn, cache miss), then
with stderr a pipe (no spinner, cache hit). Prints a toolchain x check
table and the figures behind it; exits non-zero if any check fails. Every
subprocess and request has a timeout, the whole run is bounded by
--max-seconds, and every process started is stopped on the way out.
"""

import argparse
import fcntl
import http.client
import os
import pty
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import zipfile
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__/ left in scripts/
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import harness  # noqa: E402  (paths, tools and server processes, shared)

HERE = Path(__file__).resolve().parent
OUT = harness.TARGET / "toolchains"
COMPONENTIZE_PY = "componentize-py==0.25.1"
# componentize-py ships no WIT: wasi:http 0.2.0 and the packages it uses
# come from this wheel (downloaded only, never installed).
SPIN_SDK = "spin-sdk==5.0.0"
WASI_PACKAGES = ["http", "cli", "clocks", "io", "random", "filesystem", "sockets"]

CHECKS = ["build", "exports", "first start", "GET /World", "non-ASCII", "GET /",
          "POST /echo", "405", "concurrent", "cached start"]
# What wasi:http/proxy 0.2 imports; anything else a component imports is
# beyond the proxy world (wasi-serve links all of WASI 0.2 to serve it).
PROXY_IMPORTS = {
    "wasi:http/types", "wasi:http/outgoing-handler", "wasi:io/poll", "wasi:io/error",
    "wasi:io/streams", "wasi:clocks/monotonic-clock", "wasi:clocks/wall-clock",
    "wasi:random/random", "wasi:cli/stdin", "wasi:cli/stdout", "wasi:cli/stderr",
}
TEXT = "text/plain; charset=utf-8"
ECHO = ("ping ✓ " * 1200).encode()  # 10,800 bytes: several 4096-byte writes
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
COMPILED = re.compile(r'compiled component size=(\d+) .*?elapsed=(\S+) cache="(\w+)"')
SUBPROCESS_TIMEOUT = 600


class Failed(Exception):
    """A check's verdict, with the reason shown in its cell."""


class OutOfTime(BaseException):
    """--max-seconds ran out (not an Exception: no check may swallow it)."""


def step(argv: list, what: str, **kwargs) -> float:
    """Runs one build step, quietly unless it fails; returns its seconds. It
    gets a process group of its own, all of which is killed if the step
    fails or the run is stopped (npm, for one, starts children)."""
    began = time.perf_counter()
    proc = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **kwargs)
    try:
        output, _ = proc.communicate(timeout=SUBPROCESS_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise Failed(f"{what} took over {SUBPROCESS_TIMEOUT} s")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of it
        except ProcessLookupError:
            pass
        proc.wait()
    if proc.returncode != 0:
        print(f"--- {what} failed:\n{output[-4000:]}", flush=True)
        raise Failed(f"{what} exited with {proc.returncode}")
    return time.perf_counter() - began


# --- building ------------------------------------------------------------

def build_python() -> tuple[Path, float, float]:
    """componentize-py in a venv of its own; WIT extracted from spin-sdk's
    wheel. Returns the component, setup seconds and build seconds."""
    began = time.perf_counter()
    venv = OUT / "venv"
    if not (venv / "bin/python").exists():
        step([sys.executable, "-m", "venv", venv], "python -m venv")
    step([venv / "bin/python", "-m", "pip", "install", "-q", COMPONENTIZE_PY], "pip install")
    wheels = OUT / "wheels"
    if not list(wheels.glob("spin_sdk-*.whl")):
        step([venv / "bin/python", "-m", "pip", "download", "-q", "--no-deps", "-d", wheels,
              SPIN_SDK], "pip download")
    # The WIT directory: our world, and the WASI 0.2.0 packages as deps/.
    wit = OUT / "python-wit"
    shutil.rmtree(wit, ignore_errors=True)
    (wit / "deps").mkdir(parents=True)
    shutil.copy(HERE / "python/wit/world.wit", wit / "world.wit")
    with zipfile.ZipFile(next(wheels.glob("spin_sdk-*.whl"))) as wheel:
        for package in WASI_PACKAGES:
            prefix = f"spin_sdk/wit/deps/{package}@0.2.0/"
            for name in wheel.namelist():
                if name.startswith(prefix) and name.endswith(".wit"):
                    dest = wit / "deps" / package / name[len(prefix):]
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_bytes(wheel.read(name))
    setup = time.perf_counter() - began

    # Built from a copy: componentize-py's Python leaves __pycache__/ beside
    # the module it imports.
    app = OUT / "python-app"
    shutil.rmtree(app, ignore_errors=True)
    app.mkdir()
    shutil.copy(HERE / "python/app.py", app)

    wasm = OUT / "python.wasm"
    # VIRTUAL_ENV: componentize-py looks for site-packages there, not in
    # whichever Python is on PATH.
    env = {**os.environ, "VIRTUAL_ENV": str(venv)}
    seconds = step([venv / "bin/componentize-py", "-d", wit, "-w", "app", "componentize",
                    "-p", app, "app", "-o", wasm], "componentize-py", cwd=app, env=env)
    return wasm, setup, seconds


def build_javascript() -> tuple[Path, float, float]:
    """componentize-js and its WIT, pinned in package-lock.json."""
    project = HERE / "javascript"
    setup = step(["npm", "ci", "--no-audit", "--no-fund"], "npm ci", cwd=project)
    seconds = step(["node", "build.mjs", OUT], "node build.mjs", cwd=project)
    return OUT / "javascript.wasm", setup, seconds


def build_wstd() -> tuple[Path, None, None]:
    """Built by `make build` with the other Rust guests; only looked up here."""
    wasm = harness.TARGET / "wasm32-wasip2/release/hello-wstd.wasm"
    if not wasm.exists():
        raise Failed(f"{wasm} is missing: run `make build`")
    return wasm, None, None


# (name, {Lang} in its greeting, builder, exported wasi:http version expected)
TOOLCHAINS = {
    "python": ("Python", build_python, "0.2.0"),
    "javascript": ("JavaScript", build_javascript, "0.2.3"),
    "wstd": ("wstd", build_wstd, None),  # any 0.2.x: whatever wstd's bindings say
}


# --- what a component imports and exports ---------------------------------

def leb128(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def wit_name(data: bytes, pos: int) -> tuple[str, int]:
    length, pos = leb128(data, pos)
    return data[pos:pos + length].decode(), pos + length


def skip_externdesc(data: bytes, pos: int) -> int:
    kind = data[pos]
    pos += 1
    if kind == 0x00:  # core module: 0x11, then a type index
        pos += 1
    elif kind == 0x03:  # a type bound: 0x00 `eq` and an index, 0x01 `sub resource`
        pos += 1
        if data[pos - 1] == 0x01:
            return pos
    return leb128(data, pos)[1]  # every other kind ends with an index


def interfaces(wasm: bytes) -> tuple[list[str], list[str]]:
    """The names in a component's top-level import and export sections (the
    binary format's sections 10 and 11; every other section is skipped)."""
    if wasm[:4] != b"\0asm" or wasm[6:8] != b"\1\0":
        raise Failed("not a WebAssembly component")
    imports, exports = [], []
    pos = 8
    while pos < len(wasm):
        section = wasm[pos]
        size, body = leb128(wasm, pos + 1)
        pos = body + size
        if section not in (10, 11):
            continue
        count, p = leb128(wasm, body)
        for _ in range(count):
            tag = wasm[p]
            name, p = wit_name(wasm, p + 1)
            if tag == 0x01:  # an older encoding: a version suffix follows
                p = wit_name(wasm, p)[1]
            if section == 10:
                imports.append(name)
                p = skip_externdesc(wasm, p)
            else:
                exports.append(name)
                p += 2 if wasm[p] == 0x00 else 1  # sort (core sorts take 2 bytes)
                p = leb128(wasm, p)[1]  # its index
                # An optional type ascription: 0x01 and a descriptor, or 0x00.
                p = skip_externdesc(wasm, p + 1) if wasm[p] == 0x01 else p + 1
    return imports, exports


# --- a server under test --------------------------------------------------

class Server:
    """One wasi-serve process. Its stdout is read for the address it prints;
    its stderr, a pseudo-terminal or a pipe, is collected by a thread so the
    server never blocks on it."""

    def __init__(self, server: Path, wasm: Path, cache_dir: Path, tty: bool):
        argv = [server, "--addr", "127.0.0.1:0", "--cache-dir", cache_dir, wasm]
        env = {**os.environ, "RUST_LOG": "info"}  # the compile line is at info
        if tty:
            # A terminal as a person's: a size, and a TERM that is not "dumb"
            # (unset or "dumb", as under CI, and indicatif draws nothing).
            env["TERM"] = "xterm-256color"
            reader, writer = pty.openpty()
            fcntl.ioctl(writer, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        else:
            reader, writer = os.pipe()
        self.port = None
        self.address_seen = threading.Event()
        self.stderr = bytearray()
        self.began = time.perf_counter()
        try:
            self.proc = subprocess.Popen(
                [str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=writer, env=env, start_new_session=True,
            )
        except OSError:
            os.close(reader)
            raise
        finally:
            os.close(writer)  # the child has its copy; EOF (or EIO) when it exits
        harness.running.append(self.proc)
        self.threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, args=(reader,), daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            found = re.match(rb"listening on http://[\d.]+:(\d+)", line)
            if found:
                self.port = int(found.group(1))
                self.address_seen.set()
        self.address_seen.set()  # exited without one: wake the waiter

    def _read_stderr(self, fd: int) -> None:
        try:
            while chunk := os.read(fd, 65536):
                self.stderr += chunk
        except OSError:  # EIO: a pseudo-terminal's other end has closed
            pass
        finally:
            os.close(fd)

    def log(self) -> str:
        """stderr so far, without colours and cursor movements."""
        return ANSI.sub("", bytes(self.stderr).decode("utf-8", "replace")).replace("\r", "\n")

    def ready(self, timeout: float = 180) -> float:
        """Waits for the address, then for a correct answer to GET /World;
        returns the seconds from launch to that first 200."""
        if not self.address_seen.wait(timeout) or self.port is None:
            try:
                code = self.proc.wait(1)
            except subprocess.TimeoutExpired:
                raise Failed(f"no address printed after {timeout:.0f} s")
            for thread in self.threads:
                thread.join(5)
            tail = self.log().strip()[-300:]
            raise Failed(f"exited with {code} before printing its address: {tail}")
        deadline = time.perf_counter() + 10
        while True:
            try:
                status, _, _ = request(self.port, "GET", "/World", timeout=2)
                if status == 200:
                    return time.perf_counter() - self.began
            except OSError:
                pass
            if time.perf_counter() > deadline:
                raise Failed("no 200 for GET /World within 10 s of the address")
            time.sleep(0.01)

    def compile_line(self) -> tuple[int, float, str]:
        """The `compiled component` log line: size, seconds, cache."""
        deadline = time.perf_counter() + 5  # logged before the address: no wait, usually
        while not (found := COMPILED.search(self.log())):
            if time.perf_counter() > deadline:
                raise Failed("no `compiled component` log line")
            time.sleep(0.05)
        return int(found.group(1)), seconds(found.group(2)), found.group(3)

    def stop(self) -> int:
        """SIGTERM, as a process manager would; returns the exit code."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            code = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            harness.stop(self.proc)  # SIGTERM again, then SIGKILL
            raise Failed("still running 20 s after SIGTERM")
        harness.running.remove(self.proc)
        for thread in self.threads:
            thread.join(5)
        return code


def seconds(duration: str) -> float:
    """A Rust Duration's Debug form (`257.04ms`, `1.2s`, `830µs`) in seconds."""
    number, unit = re.fullmatch(r"([\d.]+)(ns|µs|us|ms|s)", duration).groups()
    return float(number) * {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}[unit]


def request(port: int, method: str, path: str, body: bytes | None = None,
            timeout: float = 10) -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Host": "localhost"})
        response = conn.getresponse()
        data = response.read()
        return response.status, data, {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


def expect(answer, status: int, body: bytes, content_type: str | None = None) -> None:
    got_status, got_body, headers = answer
    problems = []
    if got_status != status:
        problems.append(f"status {got_status}")
    if got_body != body:
        shown = got_body[:60].decode("utf-8", "replace")
        problems.append(f"body {shown!r}" + ("…" if len(got_body) > 60 else ""))
    if content_type and headers.get("content-type") != content_type:
        problems.append(f"content-type {headers.get('content-type')!r}")
    if problems:
        raise Failed("; ".join(problems))


# --- the checks -------------------------------------------------------------

def check(cells: dict, name: str, run) -> bool:
    """Runs one check into its cell; True if it passed."""
    try:
        run()
        cells[name] = "ok"
        return True
    except Failed as failure:
        reason = str(failure)
    except Exception as error:  # a crash in a check is its failure, not the run's
        reason = f"{type(error).__name__}: {error}"
    # One line, and no `|`: it goes in a Markdown table.
    cells[name] = "FAIL (" + " ".join(reason.split()).replace("|", "/") + ")"
    return False


def check_toolchain(name: str, server_path: Path, scratch: Path, figures: dict) -> dict:
    lang, build, version = TOOLCHAINS[name]
    cells = {c: "skipped" for c in CHECKS}
    figures["notes"] = []
    built = {}

    def do_build():
        print(f"{name}: building...", flush=True)
        built["wasm"], figures["setup s"], figures["build s"] = build()
        figures["size"] = built["wasm"].stat().st_size

    if not check(cells, "build", do_build):
        return cells
    wasm = built["wasm"]

    def do_exports():
        imports, exports = interfaces(wasm.read_bytes())
        handlers = [e for e in exports if e.startswith("wasi:http/incoming-handler@")]
        if len(handlers) != 1:
            raise Failed(f"exports {exports}")
        exported = handlers[0].split("@")[1]
        figures["exports"] = exported
        figures["beyond proxy"] = sorted({
            i.split("@")[0].removeprefix("wasi:") for i in imports
            if i.split("@")[0] not in PROXY_IMPORTS
        })
        if not re.fullmatch(r"0\.2\.\d+", exported) or version not in (None, exported):
            raise Failed(f"incoming-handler@{exported}, expected {version or '0.2.x'}")

    check(cells, "exports", do_exports)

    cache_dir = scratch / f"{name}-cache"  # wasmtime owns it: keep nothing else there
    print(f"{name}: serving (first start compiles {figures['size'] / 1e6:.1f} MB)...", flush=True)
    first = Server(server_path, wasm, cache_dir, tty=True)
    logs = []  # both servers' stderr, read for warnings at the end
    try:
        def do_first_start():
            figures["first 200 s (uncached)"] = first.ready()
            size, elapsed, cache = first.compile_line()
            figures["compile s (uncached)"] = elapsed
            problems = []
            if f"compiling {wasm.name} (" not in first.log():
                problems.append("no spinner on the terminal")
            if size != figures["size"]:
                problems.append(f"logged size={size}, file has {figures['size']}")
            if cache != "miss":
                problems.append(f'cache="{cache}" in an empty cache')
            if problems:
                raise Failed("; ".join(problems))
            # Not (yet) a failure, only reported: the spinner's last frame
            # should be erased (`\r` + erase-line) before anything follows it.
            raw = bytes(first.stderr).decode("utf-8", "replace")
            frames = list(re.finditer(rf"compiling {re.escape(wasm.name)} \([^\r\x1b]*", raw))
            if frames and not raw.startswith("\r\x1b[2K", frames[-1].end()):
                figures["notes"].append("the spinner's last frame stays on the terminal "
                                        "(written after, not erased)")

        if not check(cells, "first start", do_first_start):
            return cells
        port = first.port

        def greeting(path: str, name: str):
            text = f"Hello from {lang}, {name}!" if name else f"Hello from {lang}!"
            return lambda: expect(request(port, "GET", path), 200, text.encode(), TEXT)

        check(cells, "GET /World", greeting("/World", "World"))
        check(cells, "non-ASCII", greeting("/Caf%C3%A9", "Café"))
        check(cells, "GET /", greeting("/", ""))
        check(cells, "POST /echo", lambda: expect(request(port, "POST", "/echo", ECHO), 200, ECHO))

        def do_405():
            for method, path in [("PUT", "/World"), ("POST", "/World"), ("DELETE", "/echo")]:
                answer = request(port, method, path, b"" if method != "DELETE" else None)
                try:
                    expect(answer, 405, b"")
                except Failed as failure:
                    raise Failed(f"{method} {path}: {failure}")
                # The allow header's value is not pinned yet: hello-wstd says
                # `GET` until it is rebuilt with `GET, POST`.
                if "allow" not in answer[2]:
                    raise Failed(f"{method} {path}: no allow header")

        check(cells, "405", do_405)

        def do_concurrent():
            figures["32 GETs s"] = concurrent(port, lang)

        check(cells, "concurrent", do_concurrent)

        def do_cached_start():
            code = first.stop()
            if code != 0:
                raise Failed(f"first server exited with {code} on SIGTERM")
            second = Server(server_path, wasm, cache_dir, tty=False)
            try:
                figures["first 200 s (cached)"] = second.ready()
                _, elapsed, cache = second.compile_line()
                figures["compile s (cached)"] = elapsed
            finally:
                code = second.stop()
                logs.append(second.log())
            problems = []
            if cache != "hit":
                problems.append(f'cache="{cache}"')
            if "compiling " in logs[-1]:
                problems.append("spinner drawn on a pipe")
            if elapsed >= figures["compile s (uncached)"]:
                problems.append(f"compile {elapsed:.3f} s, no faster than uncached")
            if code != 0:
                problems.append(f"exited with {code} on SIGTERM")
            if problems:
                raise Failed("; ".join(problems))

        check(cells, "cached start", do_cached_start)
    finally:
        if first.proc.poll() is None:
            harness.stop(first.proc)
        logs.insert(0, first.log())
        # Anything the server warned about is worth a look, pass or fail.
        figures["warnings"] = [line for log in logs for line in log.splitlines()
                               if re.search(r"\b(WARN|ERROR)\b|^error", line)]
    return cells


def concurrent(port: int, lang: str, clients: int = 32) -> float:
    """`clients` GETs at once, each on its own connection and with its own
    name, each of which must come back in its own answer; returns the
    seconds they took."""
    start = threading.Barrier(clients)
    answers: list = [None] * clients

    def client(i: int) -> None:
        try:
            start.wait(10)
            answers[i] = request(port, "GET", f"/caller-{i}", timeout=30)
        except Exception as error:
            answers[i] = error

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(40)
    took = time.perf_counter() - began
    for i, answer in enumerate(answers):
        if not isinstance(answer, tuple):
            raise Failed(f"/caller-{i}: {answer!r}")
        try:
            expect(answer, 200, f"Hello from {lang}, caller-{i}!".encode(), TEXT)
        except Failed as failure:
            raise Failed(f"/caller-{i}: {failure}")
    return took


# --- the report ---------------------------------------------------------------

def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def figure_rows(figures: dict) -> tuple[list[str], list[list[str]]]:
    def s(name: str, f: dict) -> str:
        if f.get(name) is None:
            return "—"
        return f"{f[name]:.2f}" if f[name] >= 1 else f"{f[name]:.3f}"

    header = ["toolchain", "size (bytes)", "exports incoming-handler", "setup s", "build s",
              "compile s uncached", "compile s cached", "launch→200 s uncached",
              "launch→200 s cached", "32 GETs s"]
    rows = []
    for name, f in figures.items():
        rows.append([
            name, f"{f['size']:,}" if "size" in f else "—", f.get("exports", "—"),
            s("setup s", f), s("build s", f),
            s("compile s (uncached)", f), s("compile s (cached)", f),
            s("first 200 s (uncached)", f), s("first 200 s (cached)", f), s("32 GETs s", f),
        ])
    return header, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", type=Path, default=harness.WASI_SERVE,
                        help="the wasi-serve binary (default: target/dist/wasi-serve)")
    parser.add_argument("--only", default=",".join(TOOLCHAINS),
                        help="comma-separated subset of: " + ", ".join(TOOLCHAINS))
    parser.add_argument("--max-seconds", type=int, default=900, help="hard bound on the whole run")
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in TOOLCHAINS]
    if unknown:
        parser.error(f"unknown toolchain(s) {', '.join(unknown)}; known: {', '.join(TOOLCHAINS)}")
    server = args.server.resolve()
    if not server.exists():
        sys.exit(f"{server} is missing: run `make build`")

    def out_of_time(*_):
        raise OutOfTime(f"the run went past --max-seconds={args.max_seconds}")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(args.max_seconds)
    began = time.perf_counter()
    OUT.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="wasi-serve-toolchains-"))
    results, figures = {}, {}
    try:
        for name in names:
            figures[name] = {}
            results[name] = check_toolchain(name, server, scratch, figures[name])
    except OutOfTime as stop:
        print(f"\ntoolchains: {stop}; everything it started is stopped", flush=True)
        return 1
    finally:
        signal.alarm(0)
        for proc in list(harness.running):
            harness.stop(proc)
        shutil.rmtree(scratch, ignore_errors=True)

    print()
    print(markdown(["toolchain", *CHECKS], [[n, *results[n].values()] for n in names]))
    print()
    print(markdown(*figure_rows(figures)))
    print()
    for name in names:
        beyond = figures[name].get("beyond proxy")
        if beyond is not None:
            print(f"{name} imports beyond wasi:http/proxy: {', '.join(beyond) or 'nothing'}")
        for line in figures[name].get("warnings", []):
            print(f"{name} server logged: {line.strip()}")
        for note in figures[name]["notes"]:
            print(f"{name} note: {note}")
    cells = [cell for row in results.values() for cell in row.values()]
    passed = cells.count("ok")
    skipped = sum(c == "skipped" for c in cells)
    failed = len(cells) - passed - skipped
    print(f"\ntook {time.perf_counter() - began:.0f} s")
    print(f"toolchains: {passed} passed, {failed} failed, {skipped} skipped")
    return 0 if passed == len(cells) else 1


if __name__ == "__main__":
    sys.exit(main())
