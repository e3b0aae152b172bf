"""deploy/kubernetes, checked without a cluster.

Each overlay is rendered by kustomize (``kubectl kustomize``, offline) and every object is
validated against the Kubernetes OpenAPI schemas (kubernetes-validate, strict: an unknown
field fails). The Prometheus Operator's ServiceMonitors are not in those schemas: their
fields are checked here, and that they select a Service and name one of its ports. Then what
the manifests name must exist in the project: each container's program, module or locustfile
(in the image), every option it passes (the program really has it), every LOCUST_* variable
(Locust reads it), every port (the program's own, and the one the Services and probes name),
every probe path (the gateway or the web UI serves it), and the hosts the master and workers
dial (Services of the same rendering). The 20,000-voice overlay is checked against the
capacity per worker process that docs/operations.md states.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import kubernetes_validate
import pytest
import yaml
from conftest import ROOT
from test_docker_compose import gateway_help, has_option, in_image, locust_parser  # noqa: F401 (fixtures)

KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(path.name for path in (KUBERNETES / "overlays").iterdir() if path.is_dir())
# The oldest Kubernetes release still in upstream support when this was written, and the newest schemas.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
# Real-time voices one worker process sends on time (p99 send lateness <= 5 ms), BENCHMARKS.md.
VOICES_PER_WORKER_PROCESS = 500
IMAGE = "voice-harness"


def kustomize(directory: Path) -> list[dict]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with its built-in kustomize) is needed to render the overlays; it is part of this machine's image"
    rendered = subprocess.run([kubectl, "kustomize", str(directory)], check=False, capture_output=True, text=True,
                              timeout=120)
    assert rendered.returncode == 0, rendered.stderr
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, kustomize(KUBERNETES / "overlays" / request.param)


def of_kind(objects: list[dict], kind: str) -> list[dict]:
    return [obj for obj in objects if obj["kind"] == kind]


def containers(objects: list[dict]):
    for deployment in of_kind(objects, "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            yield deployment, container


def env(container: dict) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", [])}


def option_value(argv: list[str], flag: str) -> str | None:
    for index, part in enumerate(argv):
        if part == flag and index + 1 < len(argv):
            return argv[index + 1]
    return None


def locust_env_vars() -> set[str]:
    """The LOCUST_* variables Locust's own parser reads (from its source; importing locust would patch this process)."""
    spec = importlib.util.find_spec("locust")
    source = (Path(spec.origin).parent / "argument_parser.py").read_text()
    return set(re.findall(r'env_var="(LOCUST_\w+)"', source))


def test_there_are_a_small_and_a_20000_voice_overlay():
    assert {"local", "20k-voices"} <= set(OVERLAYS)


def test_every_object_passes_the_kubernetes_schemas(rendered):
    name, objects = rendered
    assert {"Deployment", "Service"} <= {obj["kind"] for obj in objects}
    for obj in objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a custom resource: checked below
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(f"{name}: {obj['kind']} {obj['metadata']['name']} (Kubernetes {version}): {error.message}")


def test_the_schema_check_catches_a_misspelt_field():
    """The validation above can fail: a typo in a container is an error, not ignored."""
    objects = kustomize(KUBERNETES / "overlays" / "local")
    deployment = of_kind(objects, "Deployment")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["comand"] = ["python"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_service_monitors_select_a_service_and_name_its_metrics_port():
    objects = kustomize(KUBERNETES / "overlays" / "20k-voices")
    monitors = of_kind(objects, "ServiceMonitor")
    services = of_kind(objects, "Service")
    assert {m["metadata"]["name"] for m in monitors} == {"voice-locust-master", "voice-gateway"}
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert set(monitor["spec"]) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}
        wanted = monitor["spec"]["selector"]["matchLabels"]
        selected = [s for s in services if wanted.items() <= s["metadata"].get("labels", {}).items()]
        assert len(selected) == 1, monitor["metadata"]["name"]
        port_names = {port["name"] for port in selected[0]["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}
            assert endpoint["port"] in port_names and endpoint["path"] == "/metrics"


def test_every_container_runs_a_program_of_the_image_with_options_it_has(rendered, gateway_help, locust_parser):  # noqa: F811
    name, objects = rendered
    for deployment, container in containers(objects):
        assert container["image"].split(":")[0] == IMAGE, container["image"]
        argv = container["command"] + container.get("args", [])
        where = f"{name}: {deployment['metadata']['name']}"
        if argv[:2] == ["python", "-m"]:
            module = argv[2].replace(".", "/")
            path = f"{module}/__main__.py" if (ROOT / module).is_dir() else f"{module}.py"
            help_text = gateway_help if argv[2] == "gateway" else None
        else:
            assert argv[0] == "locust", f"{where}: unexpected program {argv[0]}"
            path = option_value(argv, "-f")
            help_text = locust_parser["help"]
        assert path and (ROOT / path).is_file() and in_image(path), f"{where}: {path} is not in the image"
        assert help_text is not None, f"{where}: no help to check {argv[2]}'s options against"
        for flag in {part for part in argv if part.startswith("--")}:
            assert has_option(help_text, flag), f"{where}: {argv[0]} has no {flag}"
        for variable in env(container):
            assert variable in locust_env_vars(), f"{where}: Locust does not read {variable}"


def test_locust_accepts_each_command_line_as_written(rendered):
    """Option values too: --list parses everything, then exits."""
    from conftest import LOCUST

    name, objects = rendered
    for deployment, container in containers(objects):
        argv = container["command"]
        if argv[0] != "locust":
            continue
        completed = subprocess.run([LOCUST, *argv[1:], "--list"], check=False, cwd=ROOT, capture_output=True,
                                   text=True, timeout=60, env={"PATH": "/usr/bin:/bin", **env(container)})
        assert completed.returncode == 0, f"{name}: {shlex.join(argv)}: {completed.stderr[-2000:]}"
        assert "BasicUser" in completed.stdout


def test_ports_are_the_programs_own_and_services_and_probes_name_them(rendered, locust_parser):  # noqa: F811
    name, objects = rendered
    by_pod_labels = {}
    for deployment, container in containers(objects):
        argv = container["command"]
        ports = {port["name"]: port["containerPort"] for port in container["ports"]} if "ports" in container else {}
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        by_pod_labels[deployment["metadata"]["name"]] = (labels, ports)
        if argv[:3] == ["python", "-m", "gateway"]:
            assert ports == {"http": int(option_value(argv, "--port"))}
        elif "--master" in argv:
            assert ports == {"web": locust_parser["web_port"], "master": locust_parser["master_port"],
                             "metrics": int(option_value(argv, "--voice-metrics-port"))}
        else:
            assert "--worker" in argv and not ports
        for probe in ("readinessProbe", "livenessProbe"):
            if probe in container:
                assert container[probe]["httpGet"]["port"] in ports, f"{name}: {probe} names no declared port"
    for service in of_kind(objects, "Service"):
        selector = service["spec"]["selector"]
        matching = [ports for labels, ports in by_pod_labels.values() if selector.items() <= labels.items()]
        assert len(matching) == 1, f"{name}: Service {service['metadata']['name']} selects {len(matching)} Deployments"
        for port in service["spec"]["ports"]:
            assert matching[0].get(port["targetPort"]) == port["port"], f"{name}: {service['metadata']['name']} {port}"


def test_the_master_dials_the_gateway_service_and_workers_the_master_service(rendered, locust_parser):  # noqa: F811
    _name, objects = rendered
    services = {s["metadata"]["name"]: {p["port"] for p in s["spec"]["ports"]} for s in of_kind(objects, "Service")}
    master = next(c for _d, c in containers(objects) if "--master" in c["command"])
    worker = next(c for _d, c in containers(objects) if "--worker" in c["command"])
    target = urlparse(env(master)["LOCUST_HOST"])
    assert target.scheme == "ws" and target.port in services[target.hostname], target
    assert env(worker)["LOCUST_MASTER_NODE_HOST"] in services
    assert int(env(worker)["LOCUST_MASTER_NODE_PORT"]) == locust_parser["master_port"]
    assert locust_parser["master_port"] in services[env(worker)["LOCUST_MASTER_NODE_HOST"]]


def test_probe_paths_are_served(gateway_factory):
    objects = kustomize(KUBERNETES / "overlays" / "local")
    gateway = gateway_factory("--fast-sink")
    for deployment, container in containers(objects):
        for probe in ("readinessProbe", "livenessProbe"):
            if probe not in container:
                continue
            path = container[probe]["httpGet"]["path"]
            if container["command"][:3] == ["python", "-m", "gateway"]:
                with urllib.request.urlopen(f"http://127.0.0.1:{gateway.port}{path}", timeout=5) as response:
                    assert response.status == 200, (deployment["metadata"]["name"], path)
            else:
                assert path == "/", "Locust's web UI answers 200 on /"


def test_the_20000_voice_overlay_stays_within_the_measured_capacity_per_worker_process():
    objects = kustomize(KUBERNETES / "overlays" / "20k-voices")
    (workers,) = [d for d in of_kind(objects, "Deployment") if d["metadata"]["name"] == "voice-locust-worker"]
    (container,) = workers["spec"]["template"]["spec"]["containers"]
    master = next(c for _d, c in containers(objects) if "--master" in c["command"])
    pods = workers["spec"]["replicas"]
    processes = int(env(container)["LOCUST_PROCESSES"])
    voices = int(env(master)["LOCUST_USERS"])
    assert (pods, voices) == (10, 20_000)
    assert voices / (pods * processes) <= VOICES_PER_WORKER_PROCESS
    # a core per worker process: each stays under the 70 % of a core past which its timers slip
    requests = container["resources"]["requests"]
    assert float(requests["cpu"]) >= processes
    assert "cpu" not in container["resources"].get("limits", {}), "a CPU limit throttles senders: late audio"
    operations = (ROOT / "docs" / "operations.md").read_text()
    assert f"{VOICES_PER_WORKER_PROCESS:,} real-time voices per worker process" in operations
