"""The WASI test suite's runtime adapter for `wasi-serve`.

The suite's runner (`run-tests -r conformance/wasi_serve.py`) imports this
file and calls the functions below, as it does its own `adapters/wasmtime.py`.
For each test it starts the command `compute_argv` returns, takes the
server's URL from the first line of its stderr (wasi-serve logs `listening on
http://ADDR ...` first), sends the test's requests, then SIGINT, and expects
exit code 0.

Environment:
  WASI_SERVE_BIN  the host command, split as a shell would (options may
                  follow); default: target/dist/wasi-serve in the
                  repository that holds this file
"""

import os
import shlex
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Tuple

_REPO = Path(__file__).resolve().parent.parent
WASI_SERVE = shlex.split(
    os.getenv("WASI_SERVE_BIN", str(_REPO / "target" / "dist" / "wasi-serve")))

# `http-client-send-errors` and `http-client-sent` send to this name and
# expect the send to fail. Allowing the origin makes it fail for the real
# reason, a name that does not resolve (`.invalid`, RFC 6761), rather than
# the host's allow-list.
_UNRESOLVABLE = "http://nonexistent.invalid:80"


def get_name() -> str:
    return "wasi-serve"


def get_version() -> str:
    out = subprocess.run(WASI_SERVE[:1] + ["--version"], encoding="UTF-8",
                         capture_output=True, check=True).stdout
    return out.split()[1]  # `wasi-serve 0.1.0`


def get_wasi_versions() -> List[str]:
    return ["wasm32-wasip3"]


def get_wasi_worlds() -> List[str]:
    return ["wasi:http/service"]


def get_timeout_seconds() -> int:
    # The wait after SIGINT; the host's own drain is shorter (below).
    return 10


def compute_argv(test_path: str,
                 args_env_root: Tuple[List[str], Dict[str, str], Optional[str]],
                 proposals: List[str],
                 wasi_world: str,
                 wasi_version: str) -> List[str]:
    args, env, root = args_env_root
    if args or root or wasi_world != "wasi:http/service":
        raise ValueError("wasi-serve serves wasi:http/service components: no "
                         "arguments, no preopened directory")
    argv = WASI_SERVE + ["--addr", "127.0.0.1:0", "--shutdown-timeout", "3s"]
    for key, value in env.items():
        argv += ["--env", f"{key}={value}"]
    # The runner's upstream servers are passed as HTTP_SERVER_NAME=HOST:PORT.
    origins = [f"http://{value}" for key, value in env.items()
               if key.startswith("HTTP_SERVER_")]
    for origin in origins + [_UNRESOLVABLE]:
        argv += ["--allow-outbound", origin]
    return argv + [test_path]
