"""docker-compose.yml and the Dockerfile, checked without Docker.

What ``docker compose up --scale worker=N`` relies on, read from the files themselves: the
three services, commands whose module or locustfile exists and whose every option the
program really has, ports that are the programs' defaults, workers that name the master
service, COPY sources that exist, and a healthcheck path the gateway serves; then Prometheus
and Grafana: pinned images, mounted files that exist, a Prometheus config that promtool
accepts and that scrapes the master's metrics port and the gateway. One slow test then runs
the master and worker command lines of the compose file for real (Docker's service names
swapped for loopback) to see the workers' users reach the gateway and their turns counted on
the master's metrics endpoint.
"""

from __future__ import annotations

import csv
import functools
import json
import re
import shlex
import subprocess
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import LOCUST, PYTHON, ROOT, free_port
from prometheus_client.parser import text_string_to_metric_families

# PyYAML reads docker-compose.yml; without it these tests skip locally and fail in CI.
pytestmark = pytest.mark.requires("pyyaml")
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
IMAGE_WORKDIR = "/app"


def _wait_or_kill(process: subprocess.Popen, timeout_s: float) -> None:
    """Let a Locust process end its run; kill it if it has not within ``timeout_s``."""
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


@functools.cache
def services() -> dict:
    """The ``services`` of docker-compose.yml (read on first use, after the pyyaml check)."""
    import yaml

    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def built() -> list[str]:
    """The services built from our image (the others are pulled)."""
    return [name for name, service in services().items() if "build" in service]


def command(service: str) -> list[str]:
    value = services()[service]["command"]
    return shlex.split(value) if isinstance(value, str) else [str(part) for part in value]


def option_value(argv: list[str], flag: str) -> str | None:
    for index, part in enumerate(argv):
        if part == flag and index + 1 < len(argv):
            return argv[index + 1]
        if part.startswith(flag + "="):
            return part.split("=", 1)[1]
    return None


def has_option(help_text: str, flag: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text) is not None


def flags(argv: list[str]) -> set[str]:
    return {part.split("=", 1)[0] for part in argv if part.startswith("--")}


def container_ports(service: str) -> set[int]:
    ports = set()
    for mapping in services()[service].get("ports", []):
        ports.add(int(str(mapping).split("/")[0].rsplit(":", 1)[-1]))
    return ports


def dockerfile_instructions() -> list[tuple[str, list[str]]]:
    """(INSTRUCTION, arguments) pairs of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        rest = rest.strip()
        arguments = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
        instructions.append((keyword.upper(), arguments))
    return instructions


def copied_sources() -> dict[str, str]:
    """COPY source → its path in the image (relative to WORKDIR)."""
    copies = {}
    for keyword, arguments in dockerfile_instructions():
        if keyword == "COPY":
            *sources, destination = [a for a in arguments if not a.startswith("--")]
            for source in sources:
                target = (
                    destination.rstrip("/") + "/" + Path(source).name
                    if destination.endswith("/")
                    else destination
                )
                copies[source] = str(Path(target))
    return copies


def in_image(path: str) -> bool:
    """Is the repo-relative ``path`` COPYed into the image's WORKDIR?"""
    wanted = Path(path)
    for target in copied_sources().values():
        target_path = Path(target)
        if wanted == target_path or target_path in wanted.parents:
            return True
    return False


@pytest.fixture(scope="module")
def gateway_help() -> str:
    return subprocess.run(
        [PYTHON, "-m", "gateway", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout


@pytest.fixture(scope="module")
def locust_parser() -> dict:
    """Locust's full parser with the voice locustfile's options: help text and defaults.

    ``locust -f locustfiles/voice.py --help`` is not enough: Locust 2.47 prints --help before
    it imports the locustfile, so options added through ``init_command_line_parser`` are
    missing from that text. Here the locustfile is imported first, as ``locust`` does for a run.
    """
    script = (
        "import json, locustfiles.voice\n"
        "from locust.argument_parser import get_parser\n"
        "parser = get_parser()\n"
        "defaults = vars(parser.parse_args(['-f', 'locustfiles/voice.py']))\n"
        "print(json.dumps({'help': parser.format_help(), 'web_port': defaults['web_port'],"
        " 'master_port': defaults['master_port']}))\n"
    )
    completed = subprocess.run(
        [PYTHON, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_compose_has_gateway_master_and_worker_services_built_from_the_dockerfile():
    assert {"gateway", "master", "worker"} <= set(services())
    for name in ("gateway", "master", "worker"):
        build = services()[name].get("build")
        context = build if isinstance(build, str) else build["context"]
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        assert (ROOT / context / dockerfile).is_file(), name


def test_every_command_runs_a_module_or_locustfile_that_exists_in_the_image():
    for name in built():
        argv = command(name)
        if argv[:2] == ["python", "-m"]:
            module = argv[2].replace(".", "/")
            path = f"{module}/__main__.py" if (ROOT / module).is_dir() else f"{module}.py"
        else:
            assert argv[0] == "locust", f"{name}: unexpected program {argv[0]}"
            path = option_value(argv, "-f") or option_value(argv, "--locustfile")
        assert path and (ROOT / path).is_file(), f"{name}: {path} is not in the repo"
        assert in_image(path), f"{name}: {path} is not COPYed into the image"


def test_gateway_command_uses_only_real_gateway_options(gateway_help):
    for flag in flags(command("gateway")):
        assert has_option(gateway_help, flag), f"python -m gateway has no {flag}"


def test_locust_commands_use_only_real_locust_and_voice_options(locust_parser):
    for name in ("master", "worker"):
        for flag in flags(command(name)):
            assert has_option(locust_parser["help"], flag), f"{name}: locust has no {flag}"


@pytest.mark.parametrize("service", ["master", "worker"])
def test_locust_accepts_each_compose_command_line_as_written(service):
    """Option values too (e.g. --preset docker is one of the choices): --list parses, then exits."""
    argv = command(service)
    completed = subprocess.run(
        [LOCUST, *argv[1:], "--list"], check=False, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    listed = set(completed.stdout.split()[2:])  # after "Available Users:"
    assert {"BasicUser", "CorpusUser", "PerformanceUser", "RecoveryUser", "StabilityUser"} <= listed
    assert "VoiceUser" not in listed  # the abstract user is not run by itself


def test_gateway_port_is_its_default_and_the_one_the_master_and_healthcheck_use(gateway_help):
    default_port = int(re.search(r"--port PORT\s+TCP port \(default (\d+)", gateway_help).group(1))
    assert default_port == 7090
    argv = command("gateway")
    assert int(option_value(argv, "--port") or default_port) == default_port
    assert container_ports("gateway") == {default_port}
    target = urlparse(option_value(command("master"), "--host"))
    assert target.scheme == "ws" and target.hostname == "gateway" and target.port == default_port
    healthcheck = " ".join(services()["gateway"]["healthcheck"]["test"])
    assert f"localhost:{default_port}/" in healthcheck


def test_master_publishes_the_web_ui_port_and_workers_name_the_master_service(locust_parser):
    master, worker = command("master"), command("worker")
    assert "--master" in master and "--worker" in worker
    web_port = int(option_value(master, "--web-port") or locust_parser["web_port"])
    assert web_port == 8089
    assert container_ports("master") == {web_port}
    assert option_value(worker, "--master-host") == "master" and "master" in services()
    master_port = int(option_value(master, "--master-bind-port") or locust_parser["master_port"])
    assert int(option_value(worker, "--master-port") or locust_parser["master_port"]) == master_port
    exposed = {
        int(port) for keyword, args in dockerfile_instructions() if keyword == "EXPOSE" for port in args
    }
    assert {7090, web_port, master_port} <= exposed


def test_master_writes_its_csv_into_the_mounted_results_volume():
    prefix = option_value(command("master"), "--csv")
    mounts = [str(volume).split(":") for volume in services()["master"].get("volumes", [])]
    assert any(prefix.startswith(container.rstrip("/") + "/") for _host, container, *_ in mounts), mounts


def test_master_waits_for_a_healthy_gateway():
    assert services()["master"]["depends_on"]["gateway"]["condition"] == "service_healthy"
    assert "healthcheck" in services()["gateway"]


def test_dockerfile_copies_paths_that_exist_and_every_package_pip_installs():
    copies = copied_sources()
    for source in copies:
        assert (ROOT / source).exists(), f"Dockerfile COPYs {source}, which is not in the repo"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert "pyproject.toml" in copies
    readme = re.search(r'^readme\s*=\s*"([^"]+)"', pyproject, re.MULTILINE)
    assert readme is None or readme.group(1) in copies, "pip install . needs the readme"
    packages = re.search(r"\[tool\.setuptools\.packages\.find\]\s*include\s*=\s*\[([^\]]*)\]", pyproject)
    for pattern in re.findall(r'"([^"*]+)\*?"', packages.group(1)):
        assert in_image(pattern), f"package {pattern} is installed by pyproject but not COPYed"
    workdirs = [args[0] for keyword, args in dockerfile_instructions() if keyword == "WORKDIR"]
    assert workdirs == [IMAGE_WORKDIR]


def test_prometheus_and_grafana_run_pinned_images_with_mounts_that_exist():
    assert {"prometheus", "grafana"} <= set(services()) and set(built()) == {"gateway", "master", "worker"}
    for name in ("prometheus", "grafana"):
        image = services()[name]["image"]
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", image), f"{name}: pin a version, not {image}"
        for volume in services()[name]["volumes"]:
            host = str(volume).split(":")[0]
            assert (ROOT / host).exists(), f"{name} mounts {host}, which is not in the repo"


def test_prometheus_reads_the_config_it_is_given_and_promtool_accepts_it():
    service = services()["prometheus"]
    mounts = {host: container for host, container, *_ in (str(v).split(":") for v in service["volumes"])}
    config_in_container = option_value(command("prometheus"), "--config.file")
    assert mounts["./deploy/prometheus/prometheus.yml"] == config_in_container
    checked = subprocess.run(["promtool", "check", "config", str(PROMETHEUS_CONFIG)], check=False,
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_prometheus_scrapes_the_masters_metrics_port_and_the_gateway():
    import yaml

    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    targets = {job["job_name"]: target for job in config["scrape_configs"]
               for group in job["static_configs"] for target in group["targets"]}
    metrics_port = option_value(command("master"), "--voice-metrics-port")
    assert metrics_port, "the master serves no --voice-metrics-port"
    assert targets["voiceharness"] == f"master:{metrics_port}"
    gateway_port = option_value(command("gateway"), "--port")
    assert targets["gateway"] == f"gateway:{gateway_port}"
    assert all("metrics_path" not in job for job in config["scrape_configs"])  # Prometheus's default: /metrics
    exposed = {int(port) for keyword, args in dockerfile_instructions() if keyword == "EXPOSE" for port in args}
    assert int(metrics_port) in exposed


def test_healthcheck_tool_is_installed_in_the_image():
    program = services()["gateway"]["healthcheck"]["test"][1]
    installs = " ".join(" ".join(args) for keyword, args in dockerfile_instructions() if keyword == "RUN")
    assert re.search(rf"apt-get install [^&]*\b{program}\b", installs), f"{program} is not installed"


def test_healthcheck_path_is_served_by_the_gateway(gateway_factory):
    url = next(part for part in services()["gateway"]["healthcheck"]["test"] if part.startswith("http"))
    path = urlparse(url).path
    assert path == "/readyz"
    gateway = gateway_factory("--fast-sink")
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.port}{path}", timeout=5) as response:
        assert response.status == 200


def test_the_gateway_serves_the_metrics_prometheus_scrapes(gateway_factory):
    gateway = gateway_factory("--fast-sink")
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert "# TYPE voice_roundtrip_ms histogram" in text


@pytest.mark.slow
def test_compose_worker_command_line_reaches_the_gateway_the_master_names(gateway_factory, tmp_path):
    """The master and worker commands as the compose file writes them, on loopback instead of Docker:
    the worker's turns reach the master's turns file and its metrics endpoint, where Prometheus
    scrapes them."""
    gateway = gateway_factory("--fast-sink")
    master_port, metrics_port = free_port(), free_port()
    prefix = tmp_path / "compose"

    def as_local(argv: list[str]) -> list[str]:
        replaced = {"ws://gateway:7090": gateway.url, "master": "127.0.0.1", "/results/run": str(prefix),
                    option_value(command("master"), "--voice-metrics-port"): str(metrics_port)}
        local = [replaced.get(part, part) for part in argv[1:]]
        return [LOCUST, *local]

    worker = subprocess.Popen(
        [*as_local(command("worker")), "--master-port", str(master_port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    master = subprocess.Popen(
        [
            *as_local(command("master")),
            "--master-bind-host", "127.0.0.1", "--master-bind-port", str(master_port),
            "--voice-metrics-host", "127.0.0.1", "--voice-metrics-linger-s", "3",
            "--headless", "-u", "2", "-r", "2", "-t", "10s", "--expect-workers", "1", "--only-summary",
            # the fast sink answers GREETING: say only "hello jarvis" so every turn can succeed
            "--tags", "basic",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last_scrape = ""
    try:
        deadline = time.monotonic() + 120
        while master.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2) as response:
                    last_scrape = response.read().decode()
            except OSError:
                pass
            time.sleep(0.3)
    finally:
        for process in (master, worker):
            _wait_or_kill(process, 30)
    with open(f"{prefix}_turns.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert rows and any(row["success"] == "1" for row in rows), {row["failure"] for row in rows}
    counted = sum(sample.value for family in text_string_to_metric_families(last_scrape)
                  for sample in family.samples if sample.name == "voiceharness_turns_total")
    assert counted == len(rows), "the master's metrics endpoint counts every turn the worker shipped"


# A locustfile whose own init listener, registered before the harness's, waits for the master's
# first spawn message: the order in which a loaded machine can run them (the worker registers
# with its master before Locust fires init, and a master that has its workers spawns at once).
_LATE_INIT_LOCUSTFILE = """
import sys
import time
import gevent
from locust import events
from locust.runners import WorkerRunner

@events.init.add_listener
def _wait_for_the_first_spawn(environment, runner, **_kwargs):
    # Yield one turn at a time: the spawn message's handler fires test_start and schedules the
    # spawning after this greenlet, so users start only once init is over, as Locust's order has it.
    if isinstance(runner, WorkerRunner):
        deadline = time.monotonic() + 60
        while runner.worker_state not in ("spawning", "running"):
            if time.monotonic() > deadline:
                raise SystemExit("the master never sent a spawn message")
            gevent.sleep(0)

sys.path.insert(0, {root!r})
from locustfiles.voice import *  # noqa: E402,F403  (the harness's init listener comes after ours)
"""


@pytest.mark.slow
def test_a_worker_whose_first_spawn_comes_before_the_harness_init_still_uses_the_masters_host(
        gateway_factory, tmp_path):
    """The worker has no --host: the master's comes with its spawn message. When that message's
    test_start fired before the harness listened (a failure seen in CI: every turn
    ``connection_refused`` to the preset's localhost:7090), the harness now takes it when it installs."""
    gateway = gateway_factory("--fast-sink")
    master_port = free_port()
    locustfile = tmp_path / "late_init.py"
    locustfile.write_text(_LATE_INIT_LOCUSTFILE.format(root=str(ROOT)))
    prefix = tmp_path / "run"
    with open(tmp_path / "worker.log", "w", encoding="utf-8") as worker_log:  # why it failed, if it did
        worker = subprocess.Popen([LOCUST, "-f", str(locustfile), "--worker", "--master-host", "127.0.0.1",
                                   "--master-port", str(master_port)],
                                  cwd=ROOT, stdout=subprocess.DEVNULL, stderr=worker_log)
    master = subprocess.run(
        [LOCUST, "-f", "locustfiles/voice.py", "--master", "--host", gateway.url, "--master-bind-host", "127.0.0.1",
         "--master-bind-port", str(master_port), "--headless", "-u", "2", "-r", "2", "-t", "6s",
         "--expect-workers", "1", "--only-summary", "--tags", "basic", "--csv", str(prefix)],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)
    _wait_or_kill(worker, 60)
    with open(f"{prefix}_turns.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert rows, master.stderr[-3000:]
    assert {row["failure"] for row in rows} <= {"", "run_stopped"}, {row["failure_detail"] for row in rows}
    assert any(row["success"] == "1" for row in rows)
