"""The deployment files of ``docs/deploy`` and the guide that shows them: checks that can fail.

What runs here is run for real: the example application under gunicorn with
``gunicorn.conf.py``; two nodes started with the command line of the systemd
unit ``chat-node@.service`` (both must form one cluster and serve
``/healthz``, and stop with status 0 on SIGTERM); the guide's recipe for
several hosts, with two addresses of 127.0.0.0/8 as the hosts;
``systemd-analyze verify`` on the units (skipped, saying so, where it is not
installed).

What cannot run here (no Docker daemon, no Kubernetes) is checked for shape
and for agreeing with the rest: the manifest parses (PyYAML, which the docs
extra brings in through myst-parser; skipped, saying so, without it), its
Services select the pods, its ``SNOWG_CLUSTER`` is a ``dns:`` strategy that
snowg's own parser accepts and that names the headless Service, the Secret
the comment says to create is the one the pods read, the Dockerfile's user,
ports, paths and command are those of the manifest and of
``gunicorn.conf.py``. Every ``SNOWG_*``/``ERL_EPMD_*`` variable the guide or a
file names is one snowg reads.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

import pytest
from support import wait_until

from snowg import cli
from snowg.cluster._epmd_client import DEFAULT_EPMD_PORT as EPMD_PORT
from snowg.cluster._strategies import Dns, Hosts, parse_specs

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "docs" / "deploy"
GUIDE = ROOT / "docs" / "guide" / "deployment.md"
UNITS = DEPLOY / "systemd"
#: Where the guide and the units install the application and its virtualenv.
INSTALLED_APP = "/opt/chat/app"
INSTALLED_BIN = "/opt/chat/venv/bin/"
#: Seconds any one wait of these tests may take.
TIME_LIMIT = 60.0

ENV_NAME = re.compile(r"\b(?:SNOWG|ERL_EPMD)_[A-Z_]*[A-Z]\b")


def deploy_files() -> List[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


# ---------------------------------------------------------------- the guide


def test_guide_shows_every_file_and_only_files_that_exist() -> None:
    included = re.findall(r"^```\{literalinclude\}\s+(\S+)", GUIDE.read_text(encoding="utf-8"), re.M)
    paths = {(GUIDE.parent / p).resolve() for p in included}
    for p in paths:
        assert p.is_file(), f"deployment.md includes {p}, which does not exist"
    missing = [str(p.relative_to(ROOT)) for p in deploy_files() if p.resolve() not in paths]
    assert not missing, f"files of docs/deploy the guide does not show: {missing}"


def snowg_string_constants() -> Set[str]:
    """Every string constant in snowg's source (the names it looks up in the environment among them)."""
    found: Set[str] = set()
    for path in (ROOT / "snowg").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.add(node.value)
    return found


def test_every_variable_named_is_one_snowg_reads() -> None:
    constants = snowg_string_constants()
    named: Dict[str, str] = {}
    for path in [GUIDE, *deploy_files()]:
        for name in ENV_NAME.findall(path.read_text(encoding="utf-8")):
            named.setdefault(name, str(path.relative_to(ROOT)))
    assert {"SNOWG_HOST", "SNOWG_CLUSTER", "SNOWG_COOKIE", "ERL_EPMD_PORT"} <= set(named), named
    unknown = {name: where for name, where in named.items() if name not in constants}
    assert not unknown, f"variables named that snowg never reads (name: first file naming it): {unknown}"


# ------------------------------------------------------------ systemd units


Unit = Dict[str, Dict[str, List[str]]]


def read_unit(path: Path) -> Unit:
    """``{section: {key: [values...]}}`` of a systemd unit or environment file (``[]`` for no section)."""
    unit: Unit = {}
    section = unit.setdefault("", {})
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        assert not line.endswith("\\"), f"{path.name}:{n}: continued lines are not used in these files"
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep and key.strip() and key == key.strip(), f"{path.name}:{n}: not KEY=VALUE: {raw!r}"
        section.setdefault(key, []).append(value.strip())
    return unit


def one(unit: Unit, section: str, key: str) -> str:
    values = unit.get(section, {}).get(key, [])
    assert len(values) == 1, f"[{section}] {key}: expected one value, found {values}"
    return values[0]


def environment(unit: Unit) -> Dict[str, str]:
    """The ``Environment=`` assignments of a unit's ``[Service]``."""
    env: Dict[str, str] = {}
    for value in unit["Service"].get("Environment", []):
        for word in shlex.split(value):
            key, sep, val = word.partition("=")
            assert sep, f"Environment={value}: {word!r} is not KEY=VALUE"
            env[key] = val
    return env


def cluster_env() -> Dict[str, str]:
    return {k: v[0] for k, v in read_unit(UNITS / "cluster.env")[""].items()}


def node_argv(exec_start: str) -> List[str]:
    """The arguments after ``snowg`` in an ``ExecStart`` of ``snowg ...``."""
    words = shlex.split(exec_start)
    assert words[0] == INSTALLED_BIN + "snowg", exec_start
    return words[1:]


def parse_node_args(argv: List[str]) -> argparse.Namespace:
    """``snowg node`` options parsed by snowg's own command-line parser (a bad option fails)."""
    args = cli.build_parser().parse_args(argv)
    assert args.command == "node"
    return args


def app_functions() -> Set[str]:
    """``module:function`` names the example application defines."""
    tree = ast.parse((DEPLOY / "chat.py").read_text(encoding="utf-8"))
    return {f"chat:{n.name}" for n in tree.body if isinstance(n, ast.FunctionDef)}


def test_epmd_unit() -> None:
    unit = read_unit(UNITS / "snowg-epmd.service")
    assert node_argv(one(unit, "Service", "ExecStart")) == ["epmd"]
    assert one(unit, "Service", "Restart") == "always"
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


def test_node_unit_runs_the_application_and_restarts_on_failure() -> None:
    unit = read_unit(UNITS / "chat-node@.service")
    argv = node_argv(one(unit, "Service", "ExecStart"))
    args = parse_node_args(argv)
    assert args.name == "%i", "each instance is the node named after it"
    assert args.app in app_functions(), f"--app {args.app}: not a function of chat.py"
    assert args.port_range is not None, "a port range a firewall can name"
    # A non-zero exit (the application's supervisor ended) is a failure systemd restarts.
    assert one(unit, "Service", "Restart") == "on-failure"
    assert "snowg-epmd.service" in one(unit, "Unit", "Requires").split()
    assert "snowg-epmd.service" in one(unit, "Unit", "After").split()
    assert one(unit, "Service", "EnvironmentFile") == "/etc/snowg/cluster.env"
    assert environment(unit)["PYTHONPATH"] == INSTALLED_APP, "--app's module must be importable"
    assert one(unit, "Service", "StateDirectoryMode") == "0700"
    assert int(one(unit, "Service", "TimeoutStopSec")) > 10, "time to stop the application, then flush (5 s)"


def gunicorn_settings() -> Dict[str, Any]:
    """The settings ``gunicorn.conf.py`` makes in an environment with none of its variables."""
    namespace: Dict[str, Any] = {}
    saved = {k: os.environ.pop(k) for k in ("WEB_CONCURRENCY", "BIND") if k in os.environ}
    try:
        exec(compile((DEPLOY / "gunicorn.conf.py").read_text(encoding="utf-8"), "gunicorn.conf.py", "exec"), namespace)
    finally:
        os.environ.update(saved)
    return namespace


def test_gunicorn_settings() -> None:
    conf = gunicorn_settings()
    assert conf["worker_class"] == "snowg.gunicorn.Worker"
    assert conf["proc_name"] == "chat", "the nodes' prefix, which the guide names"
    assert conf["bind"].startswith("127.0.0.1:"), "only this host unless BIND says otherwise"
    assert conf["graceful_timeout"] > 5, "time for requests, then the node's flush (5 s)"


def test_web_unit() -> None:
    unit = read_unit(UNITS / "chat-web.service")
    words = shlex.split(one(unit, "Service", "ExecStart"))
    assert words[0] == INSTALLED_BIN + "gunicorn"
    assert words[1:3] == ["-c", f"{INSTALLED_APP}/gunicorn.conf.py"] and words[3] == "chat:app", words
    assert one(unit, "Service", "WorkingDirectory") == INSTALLED_APP
    assert one(unit, "Service", "Type") == "notify", "gunicorn tells systemd when it is up"
    assert one(unit, "Service", "ExecReload") == "/bin/kill -s HUP $MAINPID"
    # SIGTERM to gunicorn alone: it stops the workers gracefully itself.
    assert one(unit, "Service", "KillMode") == "mixed"
    assert int(one(unit, "Service", "TimeoutStopSec")) > gunicorn_settings()["graceful_timeout"]
    assert "snowg-epmd.service" in one(unit, "Unit", "Requires").split()
    assert one(unit, "Service", "EnvironmentFile") == "/etc/snowg/cluster.env"


def test_cluster_env() -> None:
    env = cluster_env()
    strategies = parse_specs(env["SNOWG_CLUSTER"])
    hosts = [h for s in strategies if isinstance(s, Hosts) for h in s.hosts]
    assert env["SNOWG_HOST"] in hosts, "the same SNOWG_CLUSTER on every host: it names this one too"
    assert env["SNOWG_HOST"] not in ("127.0.0.1", "localhost"), "other hosts must reach this one"


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here: the units were not verified by systemd")
    bindir = Path(sys.executable).parent
    if not ((bindir / "snowg").exists() and (bindir / "gunicorn").exists()):
        pytest.skip(f"no snowg and gunicorn scripts beside {sys.executable} to stand in for {INSTALLED_BIN}")
    names = []
    for path in UNITS.glob("*.service"):
        # The commands must exist for systemd to accept a unit: this environment's stand in for /opt/chat/venv.
        (tmp_path / path.name).write_text(path.read_text(encoding="utf-8").replace(INSTALLED_BIN, f"{bindir}/"))
        names.append(path.name)
    assert len(names) == 3, names
    done = subprocess.run(
        [analyze, "verify", *(f"./{n}" for n in sorted(names))],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIME_LIMIT,
    )
    # It warns about an unknown key or a bad value and still exits 0: a warning about these units fails too.
    stems = [n.split("@")[0] if "@" in n else n.rsplit(".", 1)[0] for n in names]  # a template is verified as NAME@i
    about_ours = [line for line in (done.stdout + done.stderr).splitlines() if any(s in line for s in stems)]
    assert done.returncode == 0 and not about_ours, f"systemd-analyze verify:\n{done.stdout}{done.stderr}"


# --------------------------------------------------------- the Dockerfile


def dockerfile() -> List[Tuple[str, str]]:
    """The Dockerfile's instructions, ``(INSTRUCTION, arguments)``, continued lines joined."""
    out: List[Tuple[str, str]] = []
    pending = ""
    for line in (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        instr, _, args = (pending + line).strip().partition(" ")
        out.append((instr.upper(), " ".join(args.split())))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def instructions(name: str) -> List[str]:
    return [args for instr, args in dockerfile() if instr == name]


def dockerfile_env() -> Dict[str, str]:
    env: Dict[str, str] = {}
    for args in instructions("ENV"):
        for word in shlex.split(args):
            key, sep, value = word.partition("=")
            assert sep, f"ENV {args}: use KEY=VALUE"
            env[key] = value
    return env


def test_dockerfile() -> None:
    steps = dockerfile()
    assert steps[0][0] == "FROM"
    for name in ("CMD", "ENTRYPOINT"):
        (args,) = instructions(name)
        assert isinstance(json.loads(args), list), f"{name} in exec form, so that SIGTERM reaches the program"
    assert json.loads(instructions("ENTRYPOINT")[0])[0].endswith("tini"), "an init that forwards signals and reaps"
    cmd = json.loads(instructions("CMD")[0])
    assert cmd[:3] == ["gunicorn", "-c", "/app/gunicorn.conf.py"] and cmd[3] == "chat:app", cmd
    copied = [w for args in instructions("COPY") for w in shlex.split(args)[:-1]]
    for source in copied:
        # wheels/ is made by `pip wheel` into the build context, as the Dockerfile's comment says.
        assert source == "wheels/" or (DEPLOY / source).is_file(), f"COPY {source}: no such file in docs/deploy"
    assert {"chat.py", "gunicorn.conf.py"} <= set(copied)
    (user,) = instructions("USER")
    assert user.isdigit() and int(user) != 0, "a numeric non-root user (runAsNonRoot can check it)"
    assert re.search(rf"useradd [^&]*--uid {user}\b", " ".join(instructions("RUN"))), "USER is the user made"
    env = dockerfile_env()
    assert env["BIND"].startswith("0.0.0.0:"), "a container serves on its own addresses"
    exposed = {int(p.split("/")[0]) for args in instructions("EXPOSE") for p in args.split()}
    assert {EPMD_PORT, int(env["BIND"].rsplit(":", 1)[1])} <= exposed, exposed


# ---------------------------------------------------------- Kubernetes


def manifest() -> List[Dict[str, Any]]:
    yaml = pytest.importorskip("yaml", reason="PyYAML (from the docs extra) is needed to read kubernetes.yaml")
    with open(DEPLOY / "kubernetes.yaml", encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    for d in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(d), d
    return docs


def by_kind(docs: List[Dict[str, Any]], kind: str) -> List[Dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def expand(value: str, env: Dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion, with only the variables defined before (as Kubernetes does)."""

    def sub(m: "re.Match[str]") -> str:
        assert m.group(1) in env, f"$({m.group(1)}) is not defined before it is used"
        return env[m.group(1)]

    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", sub, value)


def container_env(container: Dict[str, Any], namespace: str, pod_ip: str) -> Dict[str, str]:
    """A container's environment as the kubelet makes it (downward API fields filled in)."""
    fields = {"metadata.namespace": namespace, "status.podIP": pod_ip}
    env: Dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = expand(var["value"], env)
        elif "fieldRef" in var["valueFrom"]:
            env[var["name"]] = fields[var["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            env[var["name"]] = "<secret>"
    return env


def test_kubernetes_manifest() -> None:
    docs = manifest()
    (deployment,) = by_kind(docs, "Deployment")
    services = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    spec = pod["spec"]
    (container,) = spec["containers"]
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}

    headless = [s for s in services.values() if s["spec"].get("clusterIP") == "None"]
    assert len(headless) == 1, "one headless Service: the dns: strategy's name"
    nodes = headless[0]
    assert nodes["spec"]["publishNotReadyAddresses"] is True, "a starting pod joins before it is ready"
    for service in services.values():
        assert service["spec"]["selector"].items() <= labels.items(), f"{service['metadata']['name']} selects no pod"
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, f"{port}: no container port of that name"
    assert port_names[nodes["spec"]["ports"][0]["targetPort"]] == EPMD_PORT

    env = container_env(container, "shop", "10.1.2.3")
    assert env["SNOWG_HOST"] == "10.1.2.3", "nodes are named and dialled by the pod's address"
    (strategy,) = parse_specs(env["SNOWG_CLUSTER"])
    assert isinstance(strategy, Dns), strategy
    assert strategy.name == f"{nodes['metadata']['name']}.shop.svc.cluster.local"
    cookie = next(v for v in container["env"] if v["name"] == "SNOWG_COOKIE")["valueFrom"]["secretKeyRef"]

    # The Secret: what the comment says to create is what the pods read.
    volumes = {v["name"]: v for v in spec["volumes"]}
    secret_volumes = [v["secret"] for v in volumes.values() if "secret" in v]
    assert [s["secretName"] for s in secret_volumes] == [cookie["name"]]
    create = re.search(
        r"kubectl create secret generic (\S+)(.*?)\n#\s+kubectl apply", read_deploy("kubernetes.yaml"), re.S
    )
    assert create is not None and create.group(1) == cookie["name"], "the comment creates the Secret the pods read"
    made = set(re.findall(r"--from-(?:literal|file)=(?:certs/)?([\w.]+)", create.group(2)))
    assert made == {cookie["key"], *(item["key"] for item in secret_volumes[0]["items"])}, made

    # The certificates reach $SNOWG_HOME/certs with a private key, through the init container.
    home = env["SNOWG_HOME"]
    assert home == dockerfile_env()["SNOWG_HOME"]
    for c in [container, *spec["initContainers"]]:
        assert c["image"] == container["image"]
        for mount in c["volumeMounts"]:
            assert mount["name"] in volumes, f"{c['name']} mounts an undefined volume {mount['name']}"
    assert {m["mountPath"] for m in container["volumeMounts"]} == {home}
    (init,) = spec["initContainers"]
    script = " ".join(init["command"])
    assert re.search(rf"install -m 0600 \S+/node\.key {re.escape(home)}/certs/", script), script
    assert spec["securityContext"]["runAsUser"] == int(instructions("USER")[0])
    assert spec["securityContext"]["runAsNonRoot"] is True

    # The command is the image's, and a rolling update never has fewer pods than asked for.
    assert container["args"] == json.loads(instructions("CMD")[0])
    assert port_names["http"] == int(dockerfile_env()["BIND"].rsplit(":", 1)[1])
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    probe = container["readinessProbe"]["httpGet"]
    assert probe["port"] == "http" and probe["path"] in app_routes()
    (sleep, seconds) = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep == "sleep"
    assert spec["terminationGracePeriodSeconds"] > int(seconds) + gunicorn_settings()["graceful_timeout"]


def read_deploy(name: str) -> str:
    return (DEPLOY / name).read_text(encoding="utf-8")


def app_routes() -> Set[str]:
    return set(re.findall(r"@web\.route\(\"([^\"]+)\"\)", read_deploy("chat.py")))


# ---------------------------------------------------------------- the runs


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_env(home: Path, **extra: str) -> Dict[str, str]:
    """A node's environment: this session's port mapper, a private SNOWG_HOME and HOME, the example app importable."""
    assert os.environ.get("ERL_EPMD_PORT"), "the test session's mapper (tests/conftest.py) must be set up"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNOWG_") and k != "XDG_RUNTIME_DIR"}
    env.update(extra)
    env.update(SNOWG_HOME=str(home), PYTHONPATH=str(DEPLOY), PYTHONDONTWRITEBYTECODE="1")
    env["HOME"] = str(home)  # gunicorn's control socket goes to ~/.gunicorn: not the user's
    return env


def healthz(url: str) -> Optional[Dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as reply:
            return dict(json.loads(reply.read()))
    except (urllib.error.URLError, ConnectionError, OSError):
        return None  # not serving yet


def wait_for_mesh(urls: List[str], count: int, procs: List[subprocess.Popen], logs: List[Path]) -> Set[str]:
    """Ask ``/healthz`` at ``urls`` until ``count`` nodes answered, each connected to all the others; their names."""
    seen: Dict[str, List[str]] = {}

    def meshed() -> bool:
        for proc in procs:
            assert proc.poll() is None, f"a process ended with {proc.returncode}:\n{show(logs)}"
        for url in urls:
            answer = healthz(url)
            if answer is not None:
                seen[answer["node"]] = answer["peers"]
        return len(seen) == count and all(sorted(peers) == sorted(set(seen) - {n}) for n, peers in seen.items())

    try:
        wait_until(meshed, f"a mesh of {count}", timeout=TIME_LIMIT)
    except AssertionError:
        raise AssertionError(f"no mesh of {count} within {TIME_LIMIT} s: {seen}\n{show(logs)}") from None
    return set(seen)


def show(logs: List[Path]) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in logs if p.exists())


def terminate(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=TIME_LIMIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("did not stop within the time limit after SIGTERM") from None
    return int(proc.returncode)


@pytest.fixture
def processes() -> Iterator[List[subprocess.Popen]]:
    started: List[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_node_unit_command_line_runs(tmp_path: Path, processes: List[subprocess.Popen]) -> None:
    """Two instances of ``chat-node@.service``, run as systemd would (on one host): one cluster, clean stops."""
    unit = read_unit(UNITS / "chat-node@.service")
    http = free_port()
    env = run_env(tmp_path / "home", **environment(unit))
    env.update(CHAT_HOST="127.0.0.1", CHAT_PORT=str(http))
    env.update(SNOWG_HOST="127.0.0.1", SNOWG_CLUSTER="local")  # cluster.env, for one host
    logs = []
    for instance in ("chat-1", "chat-2"):
        argv = [a.replace("%i", instance) for a in node_argv(one(unit, "Service", "ExecStart"))]
        log = tmp_path / f"{instance}.log"
        logs.append(log)
        with open(log, "wb") as err:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "snowg", *argv],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    stdin=subprocess.DEVNULL,
                )
            )
    assert wait_for_mesh([f"http://127.0.0.1:{http}"], 2, processes, logs) == {"chat-1@127.0.0.1", "chat-2@127.0.0.1"}
    for proc in processes:
        assert terminate(proc) == 0, f"a clean stop exits 0 (systemd does not restart it):\n{show(logs)}"


def test_gunicorn_conf_runs(tmp_path: Path, processes: List[subprocess.Popen]) -> None:
    """gunicorn with ``gunicorn.conf.py`` and 2 workers: two nodes named ``chat-...``, one cluster."""
    app = tmp_path / "app"
    app.mkdir()
    for name in ("chat.py", "gunicorn.conf.py"):
        shutil.copy(DEPLOY / name, app / name)  # as the Dockerfile does
    http = free_port()
    env = run_env(tmp_path / "home", WEB_CONCURRENCY="2", BIND=f"127.0.0.1:{http}")
    env["PYTHONPATH"] = str(app)
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as out:
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "chat:app"],
                cwd=app,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        )
    names = wait_for_mesh([f"http://127.0.0.1:{http}"], 2, processes, [log])
    assert all(re.fullmatch(r"chat-[0-9a-f]{6}@127\.0\.0\.1", n) for n in names), names
    assert terminate(processes[0]) == 0, show([log])


#: A port mapper on one address only (``snowg epmd --address`` adds 127.0.0.1, as Erlang's epmd does, so two
#: hosts simulated on 127.0.0.0/8 could not each have one on the same port): ``python -c MAPPER ADDRESS PORT``.
MAPPER = """
import sys
import gevent.event
from snowg.cluster._epmd_server import Mapper, open_listeners
mapper = Mapper(open_listeners([sys.argv[1]], int(sys.argv[2])))
mapper.start()
print("listening", flush=True)
gevent.event.Event().wait()
"""


def install(source: Path, target: Path, mode: int) -> None:
    """``install -m MODE SOURCE TARGET``, as the guide does on each host."""
    shutil.copyfile(source, target)
    target.chmod(mode)


def test_several_hosts_as_the_guide_says(tmp_path: Path, processes: List[subprocess.Popen]) -> None:
    """Two hosts, simulated by 127.0.0.2 and 127.0.0.3 (each with its own mapper), set up as the guide says.

    Certificates made once with ``snowg certs --host``, installed in each host's
    ``$SNOWG_HOME`` with the guide's modes, one cookie file for both,
    ``SNOWG_HOST`` and a ``hosts:`` strategy naming both (the same on each); on
    each, the node of the systemd unit under the same name: one cluster.
    """
    hosts = ["127.0.0.2", "127.0.0.3"]
    made = subprocess.run(
        [sys.executable, "-m", "snowg", "certs", "certs/", *(w for h in hosts for w in ("--host", h))],
        cwd=tmp_path,
        env=run_env(tmp_path / "trusted"),
        capture_output=True,
        text=True,
        timeout=TIME_LIMIT,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    (tmp_path / "cookie").write_text(os.urandom(16).hex() + "\n")
    epmd = free_port()
    http = free_port()
    unit = read_unit(UNITS / "chat-node@.service")
    logs: List[Path] = []
    for host in hosts:
        home = tmp_path / host
        (home / "certs").mkdir(parents=True)
        home.chmod(0o700)
        (home / "certs").chmod(0o700)
        for name in ("ca.pem", "node.pem"):
            install(tmp_path / "certs" / name, home / "certs" / name, 0o644)
        install(tmp_path / "certs" / "node.key", home / "certs" / "node.key", 0o600)
        install(tmp_path / "cookie", home / "cookie", 0o600)
        mapper = subprocess.Popen(
            [sys.executable, "-c", MAPPER, host, str(epmd)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        processes.append(mapper)
        assert mapper.stdout is not None and mapper.stdout.readline() == b"listening\n", f"no mapper on {host}"
        env = run_env(home, **environment(unit))
        env.update(
            ERL_EPMD_PORT=str(epmd),
            SNOWG_EPMD_ADDRESS=host,  # this "host's" mapper (on a real host: 127.0.0.1, the default)
            SNOWG_HOST=host,
            SNOWG_CLUSTER="hosts:" + ",".join(hosts),
            CHAT_HOST=host,
            CHAT_PORT=str(http),
        )
        argv = [a.replace("%i", "chat-1") for a in node_argv(one(unit, "Service", "ExecStart"))]
        logs.append(tmp_path / f"{host}.log")
        with open(logs[-1], "wb") as err:
            processes.append(
                subprocess.Popen([sys.executable, "-m", "snowg", *argv], env=env, stdout=subprocess.DEVNULL, stderr=err)
            )
    names = wait_for_mesh([f"http://{h}:{http}" for h in hosts], 2, processes, logs)
    assert names == {f"chat-1@{h}" for h in hosts}
    for log in logs:
        assert "created" not in log.read_text(), "nothing made on the hosts: the files given are used"
