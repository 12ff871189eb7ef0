#!/usr/bin/env python3
"""The training run of `make build`'s profile-guided optimisation.

`make build` first builds wasi-serve instrumented (Cargo profile `pgo-gen`,
the same settings as `dist`). This script runs that build the way users
run the server, while curl sends it requests, then merges the counts its
runs wrote into one profile (llvm-profdata, from the toolchain's
`llvm-tools`). The `dist` build then reads it: LLVM lays out and inlines
the code the requests run as hot, and the rest as cold.

What is trained is what a deployment spends its time on: the greeters over
HTTP/1.1 (64 keep-alive connections, and one) and HTTP/2, the access log on
and stderr going to a file, on one CPU (the current-thread scheduler) and on
every CPU (the multi-threaded one). Code left out of it still works, only
without the gain.

Bounded: each load is a fixed number of requests, every curl has a time
limit, and every server is stopped on the way out.

    pgo_train.py INSTRUMENTED_BINARY OUT.profdata
"""

import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import GREETER, GREETER_P3, free_port, running, start, stop  # noqa: E402

CURL_SECONDS = "120"


def curl(*args: str) -> subprocess.Popen:
    """curl sending the requests `args` describe; prints each status."""
    return subprocess.Popen(
        ["curl", "-sS", "--no-progress-meter", "--max-time", CURL_SECONDS,
         "-o", "/dev/null", "-w", "%{http_code}\n", *args],
        stdout=subprocess.PIPE,
        text=True,
    )


def expect(loads: list[tuple[subprocess.Popen, int, str]]) -> None:
    """Waits for every load; each must have got `count` answers of `status`."""
    for proc, count, status in loads:
        out, _ = proc.communicate()
        got = out.split()
        if proc.returncode != 0 or len(got) != count or set(got) != {status}:
            codes = {code: got.count(code) for code in set(got)}
            raise RuntimeError(f"training load {proc.args[-1]}: curl exited {proc.returncode}, answers {codes}")


def train(binary: Path, component: Path, pinned: bool, requests: int, raw: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [str(binary), "--addr", f"127.0.0.1:{port}", str(component)]
    env = {"LLVM_PROFILE_FILE": str(raw / "wasi-serve-%p.profraw")}
    proc, _ = start(argv, port, pinned=pinned, env=env)
    try:
        # 64 keep-alive connections, and one.
        expect(
            [
                (curl("-Z", "--parallel-max", "64", f"{url}/World[1-{requests}]"), requests, "200"),
                (curl(f"{url}/Bob[1-{requests // 10}]"), requests // 10, "200"),
            ]
        )
        # HTTP/2, one request per connection, 16 connections at a time: the
        # curl of Debian 12 (7.88) fails every request after the first on a
        # reused HTTP/2 connection, whichever server it talks to.
        for batch in range(requests // 1600):
            expect([(curl("--http2-prior-knowledge", f"{url}/h2-{batch}-{n}"), 1, "200") for n in range(16)])
        expect([(curl("-I", f"{url}/head[1-50]"), 50, "200"), (curl("-X", "POST", f"{url}/post[1-50]"), 50, "405")])
    finally:
        # A clean exit: the counts are written when the process ends.
        stop(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"{binary} exited with {proc.returncode} when stopped")


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    binary, out = Path(sys.argv[1]), Path(sys.argv[2])
    if shutil.which("curl") is None:
        print("pgo_train: curl is needed for the training load (Debian package curl)", file=sys.stderr)
        return 1
    sysroot = subprocess.run(["rustc", "--print", "sysroot"], check=True, capture_output=True, text=True).stdout
    host = subprocess.run(["rustc", "-vV"], check=True, capture_output=True, text=True).stdout
    host = next(line.split(": ")[1] for line in host.splitlines() if line.startswith("host: "))
    profdata = Path(sysroot.strip()) / "lib/rustlib" / host / "bin/llvm-profdata"
    if not profdata.exists():
        print(f"pgo_train: no {profdata}: `rustup component add llvm-tools`", file=sys.stderr)
        return 1

    raw = out.parent / "raw"
    shutil.rmtree(raw, ignore_errors=True)
    raw.mkdir(parents=True)
    for component, pinned, requests in [
        (GREETER, True, 40_000),
        (GREETER, False, 20_000),
        (GREETER_P3, True, 20_000),
    ]:
        print(f"pgo_train: {component.name}, {'one CPU' if pinned else 'every CPU'}", flush=True)
        train(binary, component, pinned, requests, raw)
    profiles = sorted(raw.glob("*.profraw"))
    if len(profiles) != 3:
        print(f"pgo_train: {len(profiles)} profiles written, 3 expected", file=sys.stderr)
        return 1
    subprocess.run([str(profdata), "merge", "-o", str(out), *map(str, profiles)], check=True)
    print(f"pgo_train: {out} ({out.stat().st_size} bytes)", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as err:
        print(f"pgo_train: {err}", file=sys.stderr)
        sys.exit(1)
    finally:
        for left in list(running):
            stop(left)
