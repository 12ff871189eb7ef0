"""`make image-test`: the image `make image` built, checked and run with podman.

1. Its layout: the layers hold the static wasi-serve, the greeter and the
   empty cache directory, nothing else; its config runs as 65532 with the
   cache in a volume, serving 0.0.0.0:8080 and the admin port 9090.
2. It runs as Kubernetes runs it (read-only root filesystem, the cache in a
   volume): /readyz and /healthz answer, the greeter greets, the process is
   not root, a stop exits 0.
3. The drain: with the test guest mounted in, a request is in flight when
   SIGTERM arrives; /readyz turns 503, the request still completes, the
   container exits 0.

Needs root (rootful podman) and a built image; not part of `make test`.
Every wait is bounded; containers and the volume are removed at the end.
"""

import io
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGE = os.environ.get("IMAGE", "localhost/wasi-serve:latest")
TEST_GUEST = os.path.join(ROOT, "target/wasm32-wasip2/release/test_guest.wasm")
NAME = f"wasi-serve-image-test-{os.getpid()}"
VOLUME = f"{NAME}-cache"
EXPECTED_FILES = {
    "usr/local/bin/wasi-serve",
    "usr/local/lib/wasi-serve/greeter.wasm",
}


def podman(*args, check=True, timeout=120):
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        sys.exit(f"image-test: podman {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout.strip()


def logs():
    """The container's stdout and stderr (podman logs keeps the two apart)."""
    done = subprocess.run(["podman", "logs", NAME], capture_output=True, text=True, timeout=60)
    return done.stdout + done.stderr


def run_flags():
    """What `podman run` needs beyond the defaults on this kind of machine.

    podman raises RLIMIT_NOFILE and RLIMIT_NPROC for the container by
    default; in a sandbox without CAP_SYS_RESOURCE that setrlimit is refused
    ("OCI permission denied"), so the container gets limits no higher than
    the caller's (NPROC lower still: the runtime's own limit there is below
    the shell's). crun refuses a hybrid cgroup v1/v2 hierarchy; runc, where
    installed, does not mind.
    """
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 4096)
    flags = ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]
    if shutil.which("runc"):
        flags += ["--runtime", "runc"]
    return flags


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path, timeout=10):
    """(status, body) of a GET on loopback; (0, error) if none came."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except (OSError, urllib.error.URLError) as err:
        return 0, str(err)


def wait_for(what, check, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    sys.exit(f"image-test: {what} did not happen within {seconds} s\n{logs()}")


def check_layout():
    config = json.loads(podman("image", "inspect", IMAGE))[0]
    cfg = config["Config"]
    expect = {
        "User": "65532:65532",
        "Entrypoint": ["/usr/local/bin/wasi-serve"],
        "Cmd": ["--addr", "0.0.0.0:8080", "--admin-addr", "0.0.0.0:9090",
                "/usr/local/lib/wasi-serve/greeter.wasm"],
    }
    for key, value in expect.items():
        if cfg.get(key) != value:
            sys.exit(f"image-test: config {key} is {cfg.get(key)!r}, expected {value!r}")
    if "WASI_SERVE_CACHE_DIR=/var/cache/wasi-serve" not in cfg.get("Env", []):
        sys.exit(f"image-test: no WASI_SERVE_CACHE_DIR in {cfg.get('Env')}")
    if set(cfg.get("ExposedPorts", {})) != {"8080/tcp", "9090/tcp"}:
        sys.exit(f"image-test: exposed ports {cfg.get('ExposedPorts')}")
    if "/var/cache/wasi-serve" not in cfg.get("Volumes", {}):
        sys.exit(f"image-test: no cache volume in {cfg.get('Volumes')}")

    # Every file in every layer, from the OCI archive podman saves.
    archive = os.path.join(ROOT, "target/image.oci.tar")
    podman("save", "--format", "oci-archive", "-o", archive, IMAGE)
    files, dirs, layers_bytes = {}, set(), 0
    with tarfile.open(archive) as oci:
        index = json.load(oci.extractfile("index.json"))
        manifest_digest = index["manifests"][0]["digest"].split(":")[1]
        manifest = json.load(oci.extractfile(f"blobs/sha256/{manifest_digest}"))
        for layer in manifest["layers"]:
            layers_bytes += layer["size"]
            blob = oci.extractfile(f"blobs/sha256/{layer['digest'].split(':')[1]}").read()
            with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
                for entry in tar:
                    name = entry.name.lstrip("./")
                    if entry.isdir():
                        dirs.add(name.rstrip("/"))
                    else:
                        files[name] = tar.extractfile(entry).read() if entry.isfile() else b""
    os.remove(archive)
    if set(files) != EXPECTED_FILES:
        sys.exit(f"image-test: the layers hold {sorted(files)}, expected {sorted(EXPECTED_FILES)}")
    if "var/cache/wasi-serve" not in dirs:
        sys.exit(f"image-test: no cache directory among {sorted(dirs)}")
    binary = files["usr/local/bin/wasi-serve"]
    # A static binary has no program interpreter (PT_INTERP names ld.so).
    if binary[:4] != b"\x7fELF" or b"ld-linux" in binary[:4096] or b"ld-musl" in binary[:4096]:
        sys.exit("image-test: wasi-serve in the image is not a static ELF binary")
    size = int(podman("image", "inspect", IMAGE, "--format", "{{.Size}}"))
    print(f"image-test: layout ok: {len(files)} files; image {size / 1e6:.1f} MB "
          f"({layers_bytes / 1e6:.1f} MB compressed layers)")
    return size


def start(*args, mounts=()):
    http, admin = free_port(), free_port()
    podman("run", "-d", "--name", NAME, *run_flags(), "--read-only",
           "-v", f"{VOLUME}:/var/cache/wasi-serve", *mounts,
           "-p", f"127.0.0.1:{http}:8080", "-p", f"127.0.0.1:{admin}:9090", IMAGE, *args)
    wait_for("/readyz 200", lambda: get(admin, "/readyz")[0] == 200)
    return http, admin


def remove():
    podman("rm", "-f", "-t", "0", NAME, check=False)


def check_greeter():
    http, admin = start()
    status, body = get(http, "/World")
    if (status, body) != (200, "Hello, World!"):
        sys.exit(f"image-test: GET /World gave {status} {body!r}")
    if get(admin, "/healthz")[0] != 200:
        sys.exit("image-test: /healthz is not 200")
    pid = podman("inspect", NAME, "--format", "{{.State.Pid}}")
    with open(f"/proc/{pid}/status") as status_file:
        uid = next(line.split()[1] for line in status_file if line.startswith("Uid:"))
    if uid != "65532":
        sys.exit(f"image-test: wasi-serve runs as uid {uid}")
    podman("stop", "-t", "30", NAME)
    code = podman("inspect", NAME, "--format", "{{.State.ExitCode}}")
    remove()
    if code != "0":
        sys.exit(f"image-test: the greeter container exited {code}")
    print("image-test: greeter ok: /World, /healthz, /readyz answered; uid 65532; stopped with exit 0")


def check_drain():
    if not os.path.exists(TEST_GUEST):
        sys.exit(f"image-test: {TEST_GUEST} is missing; run `make build`")
    http, admin = start("--addr", "0.0.0.0:8080", "--admin-addr", "0.0.0.0:9090",
                        "/srv/test_guest.wasm",
                        mounts=("-v", f"{TEST_GUEST}:/srv/test_guest.wasm:ro"))
    slow = {}
    thread = threading.Thread(target=lambda: slow.update(reply=get(http, "/sleep/3000", timeout=30)))
    thread.start()
    metric = "wasi_serve_requests_in_flight 1"
    wait_for("the slow request in flight", lambda: metric in get(admin, "/metrics")[1], seconds=10)
    podman("kill", "--signal", "TERM", NAME)
    wait_for("/readyz 503 during the drain", lambda: get(admin, "/readyz")[0] == 503, seconds=5)
    thread.join(timeout=30)
    if slow.get("reply") != (200, "slept 3000ms"):
        sys.exit(f"image-test: the request in flight got {slow.get('reply')}")
    code = podman("wait", NAME, timeout=30)
    log = logs()
    remove()
    if code != "0":
        sys.exit(f"image-test: exit {code} after the drain\n{log}")
    if "received SIGTERM" not in log or "all connections closed" not in log:
        sys.exit(f"image-test: no drain in the log\n{log}")
    print("image-test: drain ok: SIGTERM with a request in flight; /readyz 503; it completed; exit 0")


def main():
    if shutil.which("podman") is None:
        sys.exit("image-test: podman is not installed (apt-get install podman runc)")
    remove()
    try:
        check_layout()
        check_greeter()
        check_drain()
    finally:
        remove()
        podman("volume", "rm", "-f", VOLUME, check=False)
    print("image-test: passed")


if __name__ == "__main__":
    main()
