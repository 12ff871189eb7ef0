"""Offline check of the manifests in this directory (`make deploy-check`).

1. Every manifest is valid, in strict mode (unknown fields fail), against
   the schemas kubernetes-validate ships for the oldest Kubernetes the
   manifests need and for the newest it knows. No cluster, no network.
2. The promises docs/deploy.md makes hold: a rollout or drain loses no
   request, the container is locked down, the selectors meet.
3. Broken copies, made in memory, are rejected: the check can fail.
"""

import copy
import re
import sys
from pathlib import Path

import kubernetes_validate
import yaml

HERE = Path(__file__).resolve().parent
OLDEST = "1.30"  # the preStop `sleep` action is on by default from 1.30
NEWEST = ".".join(kubernetes_validate.latest_version().split(".")[:2])
CACHE_DIR = "/var/cache/wasi-serve"  # the image's WASI_SERVE_CACHE_DIR
DEFAULT_SHUTDOWN_TIMEOUT = 10.0  # the host's default, in seconds


class Failure(Exception):
    """A manifest breaks a rule; the message names the file."""


def load():
    """{file name: object} for every manifest in this directory."""
    objects = {}
    for path in sorted(HERE.glob("*.yaml")):
        try:
            docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        except yaml.YAMLError as err:
            raise Failure(f"{path.name}: not YAML: {err}")
        if len(docs) != 1:
            raise Failure(f"{path.name}: expected one object, found {len(docs)}")
        objects[path.name] = docs[0]
    return objects


def find(objects, kind):
    """(file name, object) of the one object of `kind`."""
    found = [(name, obj) for name, obj in objects.items() if obj.get("kind") == kind]
    if len(found) != 1:
        raise Failure(f"expected one {kind} in {HERE.name}/, found {len(found)}")
    return found[0]


def validate(objects):
    """Schema-checks every Kubernetes object; returns how many."""
    count = 0
    for name, obj in objects.items():
        if obj.get("kind") == "Kustomization":
            continue  # kustomize's own file, not a Kubernetes API object
        for version in (OLDEST, NEWEST):
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                where = ".".join(str(part) for part in err.path) or "(top level)"
                raise Failure(f"{name}: not valid in Kubernetes {version}: {where}: {err.message}")
            except kubernetes_validate.SchemaNotFoundError as err:
                raise Failure(f"{name}: {err.message}")
        count += 1
    return count


def flag(args, name):
    """The value of `--name VALUE` or `--name=VALUE` in `args`, or None."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def seconds(text):
    """A duration as the host reads it (`10s`, `1m 30s`, `500ms`), in seconds."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+)\s*([a-z]+)", text)
    if not re.fullmatch(r"(\s*\d+\s*[a-z]+)+\s*", text) or any(u not in units for _, u in parts):
        raise Failure(f"deployment.yaml: cannot read the duration `{text}`")
    return sum(int(number) * units[unit] for number, unit in parts)


def pod_and_container(objects):
    name, deployment = find(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    containers = [c for c in pod["containers"] if c["name"] == "wasi-serve"]
    if not containers:
        raise Failure(f"{name}: no container named `wasi-serve`")
    return name, deployment, pod, containers[0]


def check_invariants(objects):
    """Checks the promises; returns how many were checked."""
    name, deployment, pod, container = pod_and_container(objects)
    args = container.get("args", [])
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    mounts = container.get("volumeMounts", [])
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    labels = deployment["spec"]["template"]["metadata"].get("labels", {})

    def must(condition, problem, file=name):
        if not condition:
            raise Failure(f"{file}: {problem}")

    def mount_at(path):
        """The mount whose directory holds `path` (or is it), if any."""
        for mount in mounts:
            root = mount["mountPath"].rstrip("/")
            if path == root or path.startswith(root + "/"):
                return mount
        return None

    checks = 0

    # 1. SIGKILL never cuts a request: the grace period covers both phases.
    pre_stop = container.get("lifecycle", {}).get("preStop", {})
    sleep = pre_stop.get("sleep", {}).get("seconds", 0)
    timeout = flag(args, "--shutdown-timeout")
    drain = seconds(timeout) if timeout else DEFAULT_SHUTDOWN_TIMEOUT
    grace = pod.get("terminationGracePeriodSeconds", 30)
    must(
        grace > sleep + drain,
        f"terminationGracePeriodSeconds ({grace}) must exceed preStop sleep "
        f"+ --shutdown-timeout ({sleep} s + {drain:g} s)",
    )
    checks += 1

    # 2. Probes: readiness on /readyz, liveness on /healthz, both on the admin port.
    admin = flag(args, "--admin-addr")
    must(admin is not None, "no --admin-addr: /readyz and /healthz are not served")
    admin_port = int(admin.rsplit(":", 1)[1])
    named = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = container.get(probe, {}).get("httpGet", {})
        port = named.get(get.get("port"), get.get("port"))
        must(
            get.get("path") == path and port == admin_port,
            f"{probe} must GET {path} on the admin port ({admin_port})",
        )
    checks += 1

    # 3. Locked down: non-root, read-only root filesystem, no escalation.
    security = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    must(security.get("runAsNonRoot") is True, "runAsNonRoot must be true")
    must(security.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem must be true")
    must(security.get("allowPrivilegeEscalation") is False,
         "allowPrivilegeEscalation must be false")
    checks += 1

    # 4. The compile cache is a writable emptyDir where the host looks for it.
    cache_dir = env.get("WASI_SERVE_CACHE_DIR", CACHE_DIR)
    mount = mount_at(cache_dir)
    must(
        mount is not None and mount["mountPath"].rstrip("/") == cache_dir,
        f"nothing mounted at the cache dir `{cache_dir}`",
    )
    must("emptyDir" in volumes.get(mount["name"], {}), f"`{cache_dir}` must be an emptyDir")
    must(not mount.get("readOnly"), f"`{cache_dir}` must be writable")
    checks += 1

    # 5. A new component reaches the host: --watch, and a directory mount of
    #    a ConfigMap (a subPath mount never sees the ConfigMap change).
    must("--watch" in args, "--watch missing: a new ConfigMap would not be served")
    component = args[-1]
    mount = mount_at(component)
    must(mount is not None, f"the component `{component}` is on no volume")
    must("subPath" not in mount and "subPathExpr" not in mount,
         f"the component volume is subPath-mounted at `{mount['mountPath']}`: it never updates")
    must("configMap" in volumes.get(mount["name"], {}),
         f"the component volume `{mount['name']}` must be a ConfigMap")
    checks += 1

    # 6. Every container has CPU and memory requests and limits.
    for c in pod["containers"] + pod.get("initContainers", []):
        resources = c.get("resources", {})
        for kind in ("requests", "limits"):
            missing = {"cpu", "memory"} - set(resources.get(kind, {}))
            must(not missing,
                 f"container `{c['name']}` has no {kind} for {', '.join(sorted(missing))}")
    checks += 1

    # 7. A rollout keeps capacity: no old pod goes before its successor is ready.
    rolling = deployment["spec"].get("strategy", {}).get("rollingUpdate", {})
    must(rolling.get("maxUnavailable") == 0, "rollingUpdate.maxUnavailable must be 0")
    checks += 1

    # 8. The Service, the PDB and the HPA all point at these pods.
    def selects(selector):
        return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

    file, service = find(objects, "Service")
    must(selects(service["spec"].get("selector")), "the selector matches no greeter pod", file)
    file, pdb = find(objects, "PodDisruptionBudget")
    must(selects(pdb["spec"].get("selector", {}).get("matchLabels")),
         "the selector matches no greeter pod", file)
    file, hpa = find(objects, "HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    own = deployment["metadata"]["name"]
    must(target.get("kind") == "Deployment" and target.get("name") == own,
         f"scaleTargetRef must name Deployment `{own}`", file)
    checks += 1

    # 9. `kubectl apply -k` applies every manifest here.
    file, kustomization = find(objects, "Kustomization")
    listed = set(kustomization.get("resources", []))
    others = set(objects) - {file}
    must(listed == others, f"resources must list exactly {', '.join(sorted(others))}", file)
    checks += 1

    return checks


def check(objects):
    return validate(objects), check_invariants(objects)


def broken_copies(objects):
    """(what is broken, text its rejection must contain, broken copy)."""

    def pod(o):
        return o["deployment.yaml"]["spec"]["template"]["spec"]

    def wasi_serve(o):
        return pod(o)["containers"][0]

    def unknown_field(o):
        pod(o)["terminationGracePeriod"] = 30

    def short_grace(o):
        pod(o)["terminationGracePeriodSeconds"] = 15

    def sub_path(o):
        for mount in wasi_serve(o)["volumeMounts"]:
            if mount["name"] == "component":
                mount["mountPath"] = "/srv/component/greeter.wasm"
                mount["subPath"] = "greeter.wasm"

    def readiness_on_healthz(o):
        wasi_serve(o)["readinessProbe"]["httpGet"]["path"] = "/healthz"

    def pdb_elsewhere(o):
        o["pdb.yaml"]["spec"]["selector"]["matchLabels"] = {"app.kubernetes.io/name": "other"}

    def writable_root(o):
        wasi_serve(o)["securityContext"]["readOnlyRootFilesystem"] = False

    for what, expected, breaks in (
        ("an unknown field `terminationGracePeriod`", "terminationGracePeriod", unknown_field),
        ("a 15 s grace period", "terminationGracePeriodSeconds (15)", short_grace),
        ("a subPath mount of the component", "subPath", sub_path),
        ("readiness on /healthz", "readinessProbe", readiness_on_healthz),
        ("a PDB selecting other pods", "pdb.yaml", pdb_elsewhere),
        ("a writable root filesystem", "readOnlyRootFilesystem", writable_root),
    ):
        broken = copy.deepcopy(objects)
        breaks(broken)
        yield what, expected, broken


def main():
    try:
        objects = load()
        valid, invariants = check(objects)
    except Failure as err:
        sys.exit(f"deploy-check: {err}")
    except (KeyError, IndexError, TypeError, ValueError) as err:
        sys.exit(f"deploy-check: a manifest lacks the shape this check reads: {err!r}")

    rejected = 0
    for what, expected, broken in broken_copies(objects):
        try:
            check(broken)
        except Failure as err:
            if expected not in str(err):
                sys.exit(f"deploy-check: {what} was rejected for another reason: {err}")
            rejected += 1
        else:
            sys.exit(f"deploy-check: a copy with {what} passed; the check is too weak")

    print(
        f"deploy-check: {valid} manifests valid against Kubernetes {OLDEST} and {NEWEST}; "
        f"{invariants} invariants hold; {rejected} broken copies rejected"
    )


if __name__ == "__main__":
    main()
