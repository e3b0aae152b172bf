"""docker-compose.yml and the Dockerfile, checked without Docker.

What ``docker compose up --scale worker=N`` relies on, read from the files themselves: the
three services, commands whose module or locustfile exists and whose every option the
program really has, ports that are the programs' defaults, workers that name the master
service, COPY sources that exist, and a healthcheck path the gateway serves. One slow test
then runs the master and worker command lines of the compose file for real (Docker's service
names swapped for loopback) to see the workers' users reach the gateway.
"""

from __future__ import annotations

import csv
import json
import re
import shlex
import subprocess
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import LOCUST, PYTHON, ROOT, free_port

yaml = pytest.importorskip("yaml", reason="PyYAML reads docker-compose.yml (pip install pyyaml)")

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
IMAGE_WORKDIR = "/app"


def command(service: str) -> list[str]:
    value = SERVICES[service]["command"]
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
    for mapping in SERVICES[service].get("ports", []):
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
    assert {"gateway", "master", "worker"} <= set(SERVICES)
    for name in ("gateway", "master", "worker"):
        build = SERVICES[name].get("build")
        context = build if isinstance(build, str) else build["context"]
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        assert (ROOT / context / dockerfile).is_file(), name


def test_every_command_runs_a_module_or_locustfile_that_exists_in_the_image():
    for name in SERVICES:
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
    healthcheck = " ".join(SERVICES["gateway"]["healthcheck"]["test"])
    assert f"localhost:{default_port}/" in healthcheck


def test_master_publishes_the_web_ui_port_and_workers_name_the_master_service(locust_parser):
    master, worker = command("master"), command("worker")
    assert "--master" in master and "--worker" in worker
    web_port = int(option_value(master, "--web-port") or locust_parser["web_port"])
    assert web_port == 8089
    assert container_ports("master") == {web_port}
    assert option_value(worker, "--master-host") == "master" and "master" in SERVICES
    master_port = int(option_value(master, "--master-bind-port") or locust_parser["master_port"])
    assert int(option_value(worker, "--master-port") or locust_parser["master_port"]) == master_port
    exposed = {
        int(port) for keyword, args in dockerfile_instructions() if keyword == "EXPOSE" for port in args
    }
    assert {7090, web_port, master_port} <= exposed


def test_master_writes_its_csv_into_the_mounted_results_volume():
    prefix = option_value(command("master"), "--csv")
    mounts = [str(volume).split(":") for volume in SERVICES["master"].get("volumes", [])]
    assert any(prefix.startswith(container.rstrip("/") + "/") for _host, container, *_ in mounts), mounts


def test_master_waits_for_a_healthy_gateway():
    assert SERVICES["master"]["depends_on"]["gateway"]["condition"] == "service_healthy"
    assert "healthcheck" in SERVICES["gateway"]


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


def test_healthcheck_tool_is_installed_in_the_image():
    program = SERVICES["gateway"]["healthcheck"]["test"][1]
    installs = " ".join(" ".join(args) for keyword, args in dockerfile_instructions() if keyword == "RUN")
    assert re.search(rf"apt-get install [^&]*\b{program}\b", installs), f"{program} is not installed"


def test_healthcheck_path_is_served_by_the_gateway(gateway_factory):
    url = next(part for part in SERVICES["gateway"]["healthcheck"]["test"] if part.startswith("http"))
    path = urlparse(url).path
    assert path == "/readyz"
    gateway = gateway_factory("--fast-sink")
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.port}{path}", timeout=5) as response:
        assert response.status == 200


@pytest.mark.slow
def test_compose_worker_command_line_reaches_the_gateway_the_master_names(gateway_factory, tmp_path):
    """The master and worker commands as the compose file writes them, on loopback instead of Docker."""
    gateway = gateway_factory("--fast-sink")
    master_port = free_port()
    prefix = tmp_path / "compose"

    def as_local(argv: list[str]) -> list[str]:
        replaced = {"ws://gateway:7090": gateway.url, "master": "127.0.0.1", "/results/run": str(prefix)}
        local = [replaced.get(part, part) for part in argv[1:]]
        return [LOCUST, *local]

    worker = subprocess.Popen(
        [*as_local(command("worker")), "--master-port", str(master_port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        subprocess.run(
            [
                *as_local(command("master")),
                "--master-bind-host",
                "127.0.0.1",
                "--master-bind-port",
                str(master_port),
                "--headless",
                "-u",
                "2",
                "-r",
                "2",
                "-t",
                "6s",
                "--expect-workers",
                "1",
                "--only-summary",
                # the fast sink answers GREETING: say only "hello jarvis" so every turn can succeed
                "--tags",
                "basic",
            ],
            check=False,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(5)
    with open(f"{prefix}_turns.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert rows and any(row["success"] == "1" for row in rows), {row["failure"] for row in rows}
