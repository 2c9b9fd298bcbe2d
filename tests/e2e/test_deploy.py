"""The Kubernetes manifests of `deploy/kubernetes`: valid Kubernetes objects, and saying
what a cluster needs.

Every object of every manifest is validated with kubernetes-validate in strict mode (an
unknown or misspelt field fails, not only a wrong type) against the three newest Kubernetes
versions the package bundles. Then what matters is asserted: the nodes' DaemonSet is
privileged on the host's network, process ids and cgroups with its state in the hostPath
/var/lib/ai2in; nodes and gateways both take the database's URL from the Secret; a node
advertises its host's IP and is named after its Kubernetes node; the gateways' probes ask
GET /healthz; and every `--flag` and `AI2IN_*` variable the containers hand the binary is one
the binary under test ($AI2IN_BIN) lists in `ai2in serve --help` or `ai2in gateway --help`.
The node's config file is made by running the init container's own script, and the binary
reads it (it stops at the listen address, before it starts anything).
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from conftest import binary_path

try:
    import kubernetes_validate
    from kubernetes_validate import utils as kubernetes_validate_utils
    from packaging.version import Version
except ImportError:  # each test that needs it fails saying so; the rest of the suite runs
    kubernetes_validate = None

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "kubernetes"
MANIFESTS = sorted(DEPLOY.glob("*.yaml"))
EXPECTED = {"namespace.yaml", "secret.example.yaml", "node-daemonset.yaml", "gateway-deployment.yaml"}
NAMESPACE = "ai2in"
STATE_DIR = "/var/lib/ai2in"
# Read by the binary but not listed in --help.
ENV_NOT_IN_HELP = {"AI2IN_LOG"}


def kubernetes_versions() -> list[str]:
    """The three newest Kubernetes versions kubernetes-validate has schemas for: those
    Kubernetes itself still supports."""
    if kubernetes_validate is None:
        return ["newest"]
    versions = sorted(set(kubernetes_validate_utils.all_versions()), key=Version)
    return versions[-3:]


@pytest.fixture
def validator():
    if kubernetes_validate is None:
        pytest.fail("the kubernetes-validate package is missing: "
                    "pip install -r tests/e2e/requirements.txt", pytrace=False)
    return kubernetes_validate


def objects(path: Path) -> list[dict]:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def all_objects() -> list[tuple[str, dict]]:
    return [(p.name, o) for p in MANIFESTS for o in objects(p)]


def only(kind: str, name: str | None = None) -> dict:
    found = [o for _, o in all_objects()
             if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''} in deploy/kubernetes, found {len(found)}"
    return found[0]


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def container(workload: dict, name: str, init: bool = False) -> dict:
    listed = pod_spec(workload).get("initContainers" if init else "containers", [])
    found = [c for c in listed if c["name"] == name]
    assert found, f"{workload['kind']} {workload['metadata']['name']} has no container {name!r}: {[c['name'] for c in listed]}"
    return found[0]


def all_containers() -> list[tuple[str, dict]]:
    out = []
    for _, o in all_objects():
        if o["kind"] in ("DaemonSet", "Deployment", "StatefulSet", "Job"):
            spec = pod_spec(o)
            for c in spec.get("initContainers", []) + spec.get("containers", []):
                out.append((f"{o['kind']} {o['metadata']['name']}, container {c['name']}", c))
    return out


def env(c: dict) -> dict[str, dict]:
    return {e["name"]: e for e in c.get("env", [])}


def flag_value(argv: list[str], flag: str) -> str | None:
    """The value of `--flag` in `argv`, written `--flag=v` or `--flag v`."""
    for i, tok in enumerate(argv):
        if tok == flag and i + 1 < len(argv):
            return argv[i + 1]
        if tok.startswith(flag + "="):
            return tok[len(flag) + 1:]
    return None


def ai2in_invocations(c: dict) -> list[tuple[str, list[str]]]:
    """(subcommand, its arguments) for each run of the ai2in binary a container makes: as its
    command and args, or inside a shell script it runs."""
    argv = [str(a) for a in c.get("command", []) + c.get("args", [])]
    for i, tok in enumerate(argv):
        if Path(tok).name == "ai2in" and i + 1 < len(argv):
            return [(argv[i + 1], argv[i + 2:])]
    found = []
    for tok in argv:
        for m in re.finditer(r"(?:^|[\s;&|(])(?:\S*/)?ai2in\s+(\w+)([^\n;&|]*)", tok):
            found.append((m.group(1), m.group(2).split()))
    return found


def help_of(subcommand: str) -> str:
    done = subprocess.run([str(binary_path()), subcommand, "--help"], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, f"ai2in {subcommand} --help exited with {done.returncode}: {done.stderr}"
    return done.stdout


def volume_mounted_at(workload: dict, c: dict, path: str) -> dict:
    """The pod's volume that container `c` mounts at `path`."""
    mounts = [m for m in c.get("volumeMounts", []) if m["mountPath"].rstrip("/") == path.rstrip("/")]
    assert mounts, f"container {c['name']} mounts nothing at {path}: {c.get('volumeMounts')}"
    volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
    return volumes[mounts[0]["name"]]


# ---------------------------------------------------------------------------------------------
# valid Kubernetes


def test_the_manifests_are_all_there_and_the_readme_names_each():
    assert {p.name for p in MANIFESTS} >= EXPECTED, f"deploy/kubernetes has {[p.name for p in MANIFESTS]}"
    readme = (DEPLOY / "README.md").read_text()
    for p in MANIFESTS:
        assert p.name in readme, f"deploy/kubernetes/README.md does not say when to apply {p.name}"


@pytest.mark.parametrize("version", kubernetes_versions())
@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_every_object_is_valid_for_current_kubernetes_in_strict_mode(manifest: Path, version: str, validator):
    docs = objects(manifest)
    assert docs, f"{manifest.name} holds no object"
    problems = []
    for obj in docs:
        assert isinstance(obj, dict) and {"apiVersion", "kind", "metadata"} <= set(obj), (
            f"{manifest.name}: not a Kubernetes object: {str(obj)[:200]}")
        what = f"{manifest.name}: {obj['kind']} {obj['metadata'].get('name')}"
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            problems.append(f"{what} is not valid for Kubernetes {e.version}: "
                            f"{'.'.join(map(str, e.path)) or '(top)'}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            # An unknown kind or apiVersion: nothing to validate it against is a failure too.
            problems.append(f"{what}: {e.message}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def test_the_validation_fails_on_a_broken_manifest(validator):
    """The check above would catch a mistake: a misspelt field and a wrong type each fail."""
    version = kubernetes_versions()[-1]
    daemonset = only("DaemonSet")
    misspelt = yaml.safe_load(yaml.safe_dump(daemonset))
    pod_spec(misspelt)["hostNetwrok"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, version, strict=True)
    deployment = yaml.safe_load(yaml.safe_dump(only("Deployment")))
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, version, strict=True)


def test_everything_is_in_the_ai2in_namespace_which_admits_privileged_pods():
    ns = only("Namespace")
    assert ns["metadata"]["name"] == NAMESPACE
    assert ns["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") == "privileged", (
        "the nodes' pods are privileged: the namespace's Pod Security level must admit them")
    for file, o in all_objects():
        if o["kind"] != "Namespace":
            assert o["metadata"].get("namespace") == NAMESPACE, f"{file}: {o['kind']} {o['metadata']['name']}"


# ---------------------------------------------------------------------------------------------
# what the manifests say


def test_the_node_daemonset_is_privileged_on_the_host_with_its_state_in_a_hostpath():
    ds = only("DaemonSet")
    spec = pod_spec(ds)
    node = container(ds, "node")
    assert node.get("securityContext", {}).get("privileged") is True, "the node container must be privileged"
    assert spec.get("hostNetwork") is True, "nodes run on the host's network (links, nftables, advertised IP)"
    assert spec.get("hostPID") is True, "sandboxes must outlive the node's container (host pid namespace)"
    assert spec.get("dnsPolicy") == "ClusterFirstWithHostNet", "a Service name in the URL must resolve on the host network"

    args = [str(a) for a in node.get("args", [])]
    assert flag_value(args, "--state-dir") == STATE_DIR, args
    state = volume_mounted_at(ds, node, STATE_DIR)
    assert state.get("hostPath", {}).get("path") == STATE_DIR, f"the state dir is not the hostPath {STATE_DIR}: {state}"
    assert state["hostPath"].get("type") == "DirectoryOrCreate", state
    cgroup = volume_mounted_at(ds, node, "/sys/fs/cgroup")
    assert cgroup.get("hostPath", {}).get("path") == "/sys/fs/cgroup", f"sandboxes' cgroups must be the host's: {cgroup}"
    # No limits: sandboxes are not in the pod's cgroup, and a limit would only stop the node.
    assert "limits" not in node.get("resources", {}), node.get("resources")


def test_nodes_and_gateways_take_the_database_url_from_the_secret():
    secret = only("Secret")
    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    ds, deployment = only("DaemonSet"), only("Deployment")
    for workload, cname, var, flag in ((ds, "node", "AI2IN_CLUSTER", "--cluster"),
                                       (deployment, "gateway", "AI2IN_POSTGRES", "--postgres")):
        c = container(workload, cname)
        entry = env(c).get(var)
        assert entry is not None, f"{cname}: no {var} in its env"
        assert "value" not in entry, f"{cname}: {var} is written in the manifest, not taken from the Secret"
        ref = entry.get("valueFrom", {}).get("secretKeyRef", {})
        assert ref.get("name") == secret["metadata"]["name"] and ref.get("key") in keys, (
            f"{cname}: {var} does not come from Secret {secret['metadata']['name']} {sorted(keys)}: {entry}")
        argv = [str(a) for a in c.get("command", []) + c.get("args", [])]
        assert flag_value(argv, flag) is None, f"{cname}: {flag} on the command line would bypass the Secret"
        assert not any("postgres://" in a for a in argv), f"{cname}: a database URL in its arguments"


def test_a_node_advertises_its_host_ip_and_is_named_after_its_kubernetes_node():
    ds = only("DaemonSet")
    node = container(ds, "node")
    variables = list(env(node))
    host_ip = env(node).get("HOST_IP", {})
    assert host_ip.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.hostIP", host_ip
    advertise = env(node).get("AI2IN_ADVERTISE", {})
    assert re.fullmatch(r"\$\(HOST_IP\):\d+", advertise.get("value", "")), advertise
    assert variables.index("HOST_IP") < variables.index("AI2IN_ADVERTISE"), (
        "Kubernetes expands $(HOST_IP) only when HOST_IP is defined before AI2IN_ADVERTISE")
    args = [str(a) for a in node.get("args", [])]
    port = advertise["value"].rsplit(":", 1)[1]
    assert (flag_value(args, "--listen") or "").endswith(f":{port}"), (
        f"the node listens on {flag_value(args, '--listen')}, advertises port {port}")

    # node_id: only the config file sets it, so an init container writes it there.
    init = container(ds, "node-id", init=True)
    name = env(init).get("NODE_NAME", {})
    assert name.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName", name
    script = "\n".join(str(a) for a in init.get("command", []) + init.get("args", []))
    assert "node_id" in script and "NODE_NAME" in script, script
    config_path = flag_value(args, "--config")
    assert config_path and config_path in script, f"the init script does not write {config_path}"
    configmap = only("ConfigMap")
    assert "node_id" not in tomllib.loads(configmap["data"]["ai2in.toml"]), (
        "the ConfigMap's file must leave node_id to the init container (a key twice is an error)")


def test_the_node_reads_the_config_file_the_init_container_makes(tmp_path):
    ds = only("DaemonSet")
    init, node = container(ds, "node-id", init=True), container(ds, "node")
    assert init.get("command") == ["/bin/sh", "-c"] and len(init.get("args", [])) == 1, (
        f"the init container is not `/bin/sh -c SCRIPT`: {init.get('command')} {init.get('args')}")
    script = str(init["args"][0])
    # The script's mounts, made directories of this test.
    for m in init.get("volumeMounts", []):
        local = tmp_path / m["mountPath"].strip("/").replace("/", "_")
        local.mkdir()
        script = script.replace(m["mountPath"], str(local))
        volume = {v["name"]: v for v in pod_spec(ds)["volumes"]}[m["name"]]
        if "configMap" in volume:
            for key, text in only("ConfigMap", volume["configMap"]["name"])["data"].items():
                (local / key).write_text(text)
    done = subprocess.run(["/bin/sh", "-c", script], env={**os.environ, "NODE_NAME": "k8s-worker-1.example"},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"the init script failed: {done.stderr}"
    config_path = flag_value([str(a) for a in node["args"]], "--config")
    made = [m for m in init["volumeMounts"] if config_path.startswith(m["mountPath"] + "/")]
    assert made, f"{config_path} is in none of the init container's mounts"
    config = tmp_path / made[0]["mountPath"].strip("/").replace("/", "_") / config_path[len(made[0]["mountPath"]) + 1:]
    assert tomllib.loads(config.read_text())["node_id"] == "k8s-worker-1.example", config.read_text()

    # The binary parses the config first and stops at a listen address it cannot use, before
    # it touches a state dir: an unknown key would stop it earlier, naming the file.
    state = tmp_path / "state"
    done = subprocess.run([str(binary_path()), "serve", "--config", str(config), "--state-dir", str(state),
                           "--listen", "127.0.0.1:not-a-port"],
                          env={k: v for k, v in os.environ.items() if not k.startswith("AI2IN_")},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode != 0 and "config file" not in done.stderr, f"ai2in refused the node's config: {done.stderr}"
    assert "listen on" in done.stderr or "must run as root" in done.stderr, done.stderr
    assert not state.exists(), "ai2in serve went past the listen address"


def test_the_gateways_are_two_behind_a_service_with_probes_on_healthz():
    deployment = only("Deployment")
    assert deployment["spec"]["replicas"] == 2
    gw = container(deployment, "gateway")
    args = [str(a) for a in gw.get("args", [])]
    listen_port = int((flag_value(args, "--listen") or "0.0.0.0:4747").rsplit(":", 1)[1])
    ports = {p.get("name"): p["containerPort"] for p in gw.get("ports", [])}
    assert listen_port in ports.values(), f"the gateway listens on {listen_port}, declares {ports}"
    for probe in ("readinessProbe", "livenessProbe"):
        http = gw.get(probe, {}).get("httpGet")
        assert http and http.get("path") == "/healthz", f"{probe}: {gw.get(probe)}"
        assert ports.get(http["port"], http["port"]) == listen_port, f"{probe} asks port {http['port']}"

    service = only("Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items(), (service["spec"]["selector"], labels)
    target = service["spec"]["ports"][0]["targetPort"]
    assert ports.get(target, target) == listen_port, service["spec"]["ports"]

    # The state dir (the first gateway's admin.key) is an emptyDir where --state-dir says.
    state = volume_mounted_at(deployment, gw, flag_value(args, "--state-dir") or "/var/lib/ai2in-gateway")
    assert "emptyDir" in state, state


def test_every_flag_and_variable_handed_to_the_binary_is_one_it_accepts():
    helps: dict[str, str] = {}
    checked = 0
    for where, c in all_containers():
        runs = ai2in_invocations(c)
        for subcommand, argv in runs:
            text = helps.setdefault(subcommand, help_of(subcommand))
            accepted = set(re.findall(r"(?m)^\s+(?:-\w, )?(--[a-z0-9][a-z0-9-]*)", text))
            for tok in argv:
                if tok.startswith("--"):
                    flag = tok.split("=", 1)[0]
                    assert flag in accepted, f"{where}: `ai2in {subcommand} --help` has no {flag} (it has {sorted(accepted)})"
                    checked += 1
            variables = set(re.findall(r"\[env: (AI2IN_[A-Z0-9_]+)=", text))
            for name in env(c):
                if name.startswith("AI2IN_"):
                    assert name in variables | ENV_NOT_IN_HELP, (
                        f"{where}: `ai2in {subcommand}` reads no {name} (its help lists {sorted(variables)})")
                    checked += 1
    assert {"serve", "gateway"} <= set(helps), f"the manifests run ai2in {sorted(helps)}, not both serve and gateway"
    assert checked >= 6, f"only {checked} flags and variables found to check"


def test_every_container_runs_the_one_placeholder_image_the_readme_describes():
    images = {c["image"] for _, c in all_containers()}
    assert len(images) == 1, f"nodes, their init step and gateways should run one image: {images}"
    image = images.pop()
    assert image in (DEPLOY / "README.md").read_text(), f"deploy/kubernetes/README.md does not mention {image}"
