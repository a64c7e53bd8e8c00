"""Real services on 127.0.0.1 for tests and benchmarks: a throw-away PostgreSQL cluster (Debian's
server binaries, /usr/lib/postgresql/*/bin) and an `mlflow server` on it.

    from services import pg_cluster            # pytest fixture (function scope)
    from services import PgCluster, MlflowServer, free_port, wait_http

`benchmarks/load.py` imports this module too (it puts tests/ on sys.path), so nothing here
needs pytest except the fixtures.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
# a password that breaks every naive way of putting it into a URL or into SQL
NASTY_PASSWORD = "p@ss:w/rd%2F?#&'\" x;--"


class ServiceUnavailable(RuntimeError):
    """The binaries a service needs are not installed here (see `unavailable`)."""


def unavailable(reason: str):
    """A tool or service a test needs is missing: a failure in CI (where `.ci/run` installs
    everything, so a silent skip would hide a broken set-up), a skip with the reason elsewhere."""
    pytest = _pytest()
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: .ci/run must install it)", pytrace=False)
    pytest.skip(reason)


def _shared_tmp() -> str:
    """/tmp where it is there (sticky and open to every user), else the system's temp dir."""
    return "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()


def pg_bin(name: str) -> str | None:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(found[-1]) if found else shutil.which(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_http(
    url: str, timeout: float, proc: subprocess.Popen | None = None, headers: dict | None = None
) -> int:
    """The HTTP status `url` answers with, once it answers at all (polls until `timeout`)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None:
            assert proc.poll() is None, f"the server exited ({proc.returncode})"
        try:
            req = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(req, timeout=3) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout} s")


# --------------------------------------------------------------------------- PostgreSQL


class PgCluster:
    """A throw-away PostgreSQL on 127.0.0.1 initialised like the official image does it: the
    superuser's password from a secret file, scram over TCP, then docker/postgres-init.sh (roles
    and databases `optuna` and `mlflow`, both with the superuser's password)."""

    def __init__(self, password: str = NASTY_PASSWORD, init_script: bool = True):
        self.password = password
        self.init_script = init_script
        self.initdb, self.pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
        if not (self.initdb and self.pg_ctl and shutil.which("psql")):
            raise ServiceUnavailable("PostgreSQL server binaries not installed")
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            if not shutil.which("runuser"):
                raise ServiceUnavailable("running as root without runuser")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.base: Path | None = None
        self.port = 0

    def _run(self, cmd, **kw):
        # cwd=base: the postgres user may not be allowed into the caller's working directory
        return subprocess.run(
            self.as_user + cmd, check=True, capture_output=True, text=True, cwd=self.base, **kw
        )

    @property
    def data(self) -> Path:
        assert self.base is not None
        return self.base / "data"

    @property
    def secret(self) -> Path:
        assert self.base is not None
        return self.base / "pg_password"

    def start(self) -> PgCluster:
        # A folder of its own directly under /tmp (not $TMPDIR, not pytest's tmp_path): the
        # postgres user must reach it, and the checkout or pytest's folders may sit under a
        # private (0700) directory. For the same reason the init script runs from a copy here.
        self.base = Path(tempfile.mkdtemp(prefix="sweep-pg-", dir=_shared_tmp()))
        self.secret.write_text(self.password + "\n")
        init_script = self.base / "postgres-init.sh"
        shutil.copyfile(DOCKER / "postgres-init.sh", init_script)
        if self.as_user:
            for path in (self.base, self.secret, init_script):
                shutil.chown(path, "postgres")
        self.port = free_port()
        self._run(
            [
                self.initdb,
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--pwfile",
                str(self.secret),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ]
        )
        self._run(
            [
                self.pg_ctl,
                "-D",
                str(self.data),
                "-w",
                "-l",
                str(self.base / "log"),
                "-o",
                f"-k {self.base} -p {self.port} -h 127.0.0.1 -c max_connections=200",
                "start",
            ]
        )
        try:
            if self.init_script:
                self._run(["sh", str(init_script)], env=self.env())
        except BaseException:
            self.stop()
            raise
        return self

    def env(self) -> dict[str, str]:
        """Environment for psql over the cluster's Unix socket as the superuser."""
        return {
            **os.environ,
            "POSTGRES_USER": "postgres",
            "POSTGRES_PASSWORD_FILE": str(self.secret),
            "PGHOST": str(self.base),
            "PGPORT": str(self.port),
        }

    def psql(self, sql: str, db: str = "postgres", **variables: str) -> str:
        args = ["psql", "-v", "ON_ERROR_STOP=1", "--no-psqlrc", "-U", "postgres", "-d", db, "-At"]
        for k, v in variables.items():
            args += ["-v", f"{k}={v}"]
        return self._run(args, input=sql, env=self.env()).stdout

    def create_database(self, name: str, user: str, password: str) -> str:
        """A role and a database it owns; returns its plain `postgresql://` URL (psycopg 3)."""
        self.psql(
            f"CREATE ROLE {user} LOGIN PASSWORD :'pw';\nCREATE DATABASE {name} OWNER {user};\n",
            pw=password,
        )
        return self.url(user, password, name)

    def url(self, user: str, password: str, db: str, driver: str = "postgresql") -> str:
        return (
            f"{driver}://{quote(user, safe='')}:{quote(password, safe='')}"
            f"@127.0.0.1:{self.port}/{db}"
        )

    def stop(self) -> None:
        if self.base is None:
            return
        subprocess.run(
            self.as_user + [self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(self.base, ignore_errors=True)
        self.base = None


def _pytest():
    import pytest

    return pytest


def _fixture(**kw):
    try:
        import pytest
    except ImportError:  # the benchmark runs without pytest
        return lambda f: f
    return pytest.fixture(**kw)


@_fixture()
def pg_cluster():
    """A throw-away PostgreSQL cluster (see PgCluster); yields port, password, secret, base and
    the PgCluster itself. Without PostgreSQL's server binaries: see `unavailable`."""
    try:
        cluster = PgCluster().start()
    except ServiceUnavailable as e:
        unavailable(str(e))
    try:
        yield {
            "port": cluster.port,
            "password": cluster.password,
            "secret": cluster.secret,
            "base": cluster.base,
            "cluster": cluster,
        }
    finally:
        cluster.stop()


# --------------------------------------------------------------------------- MLflow server


class MlflowServer:
    """`mlflow server` on 127.0.0.1 with a database backend and proxied artifacts in a folder.
    The backend URL (with its password) goes through MLFLOW_BACKEND_STORE_URI, not argv. It can
    be stopped (SIGKILL to its process group, like a crash) and started again on the same port."""

    def __init__(
        self,
        backend_uri: str,
        artifacts: Path,
        log: Path,
        port: int | None = None,
        workers: int = 1,
    ):
        self.backend_uri = backend_uri
        self.workers = workers
        self.artifacts = Path(artifacts)
        self.log = Path(log)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 180) -> MlflowServer:
        mlflow = Path(sys.executable).parent / "mlflow"
        env = {
            **os.environ,
            "MLFLOW_BACKEND_STORE_URI": self.backend_uri,
            "PATH": f"{mlflow.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        }
        self.artifacts.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(
                [
                    str(mlflow) if mlflow.exists() else "mlflow",
                    "server",
                    "--serve-artifacts",
                    "--artifacts-destination",
                    str(self.artifacts),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    str(self.workers),
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            status = wait_http(f"{self.uri}/health", timeout, self.proc)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.log.read_text()[-3000:]}") from None
        assert status == 200, f"{self.uri}/health answered {status}"
        return self

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        # gunicorn/uvicorn workers live in the same session: make sure the port is free again
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None
        deadline = time.time() + 30
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    break
            time.sleep(0.2)


# --------------------------------------------------------------------------- Ray


class RayCluster:
    """A Ray cluster on this host: a head with no CPUs or GPUs (so every task runs on a worker
    node) and `nodes` worker nodes, all on 127.0.0.1. Each process gets its own ports and the
    cluster its own temp dir, so clusters of parallel tests do not meet. Nodes start with `env`
    only (a cluster's nodes do not see the driver's environment). Stopped by PID, never `ray
    stop` (which stops every Ray process of the host)."""

    def __init__(
        self, nodes: int = 2, env: dict[str, str] | None = None, cpus: int = 1, gpus: int = 0
    ):
        self.n_nodes = nodes
        self.cpus = cpus
        self.gpus = gpus  # per worker node: GPUs Ray counts and hands out (none need be there)
        self.env = env or {}
        self.temp = Path(tempfile.mkdtemp(prefix="ray-", dir=_shared_tmp()))
        self.port = free_port()
        self.used: set[int] = {self.port}  # every port this cluster's processes were given

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _python(self) -> Path:
        """The interpreter the nodes run. A raylet starts its workers through a shell without
        quoting the interpreter's path, so a venv whose path has a space (a checkout in "work
        dir/") cannot start any worker (`bash: /tmp/ci/work: No such file or directory`, and
        tasks wait forever). The nodes then run a view of the same venv from this cluster's temp
        dir (its own pyvenv.cfg, `bin/python` and `lib` linked to the real ones)."""
        real = Path(sys.executable)
        if " " not in str(real):
            return real
        venv = Path(sys.prefix)
        view = self.temp / "venv"
        if not view.exists():
            (view / "bin").mkdir(parents=True)
            shutil.copyfile(venv / "pyvenv.cfg", view / "pyvenv.cfg")
            (view / "bin" / "python").symlink_to(real)
            (view / "lib").symlink_to(venv / "lib")
        return view / "bin" / "python"

    def _ports(self, n: int) -> list[int]:
        """`n` free ports no other process of this cluster has (free_port draws from the
        kernel's ephemeral range, 32768 and up, which the workers' ranges stay below)."""
        ports: list[int] = []
        while len(ports) < n:
            port = free_port()
            if port not in self.used:
                self.used.add(port)
                ports.append(port)
        return ports

    def _worker_range(self, size: int = 200) -> range:
        """A range of ports for one node's workers: below the ephemeral range (so no port drawn
        by free_port, here or in a parallel test, falls inside it), every port free now."""
        rng = random.Random()
        for _ in range(100):
            low = rng.randrange(20000, 32000 - size)
            ports = range(low, low + size + 1)
            if self.used.isdisjoint(ports) and all(_free(p) for p in ports):
                self.used.update(ports)
                return ports
        raise AssertionError("no free range of worker ports below 32000")

    def _start(self, args: list[str]) -> None:
        if not (Path(sys.executable).parent / "ray").exists():
            raise ServiceUnavailable("ray is not installed (pip install -e '.[ray]')")
        names = [
            "--node-manager-port",
            "--object-manager-port",
            "--metrics-export-port",
            "--runtime-env-agent-port",
            "--dashboard-agent-grpc-port",
            "--dashboard-agent-listen-port",
            "--ray-client-server-port",
            "--dashboard-port",
        ]
        workers = self._worker_range()
        ports = dict(zip(names, self._ports(len(names)), strict=True))
        if "--head" not in args:
            for head_only in ("--ray-client-server-port", "--dashboard-port"):
                ports.pop(head_only)
        python = self._python()
        cmd = [str(python), "-m", "ray.scripts.scripts", "start", "--node-ip-address=127.0.0.1"]
        cmd += ["--disable-usage-stats", *(f"{k}={v}" for k, v in ports.items())]
        cmd += [f"--min-worker-port={workers.start}", f"--max-worker-port={workers.stop - 1}"]
        env = {
            "PATH": f"{python.parent}:/usr/bin:/bin",
            "HOME": os.environ.get("HOME", "/tmp"),
            "RAY_USAGE_STATS_ENABLED": "0",
            **self.env,
        }
        out = subprocess.run(
            cmd + args, env=env, capture_output=True, text=True, timeout=120, cwd=self.temp
        )
        if out.returncode != 0:
            raise AssertionError(f"ray start failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")

    def start(self) -> RayCluster:
        try:
            self._start(
                [
                    "--head",
                    f"--port={self.port}",
                    "--num-cpus=0",
                    "--num-gpus=0",
                    f"--temp-dir={self.temp}",
                    "--include-dashboard=false",
                ]
            )
            for _ in range(self.n_nodes):
                self._start(
                    [
                        f"--address={self.address}",
                        f"--num-cpus={self.cpus}",
                        f"--num-gpus={self.gpus}",
                    ]
                )
        except BaseException:
            self.stop()
            raise
        return self

    def pids(self) -> list[int]:
        """Every process of this cluster: those naming its temp dir, and their children."""
        found = set()
        procs = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            procs[int(entry.name)] = ppid
            if str(self.temp) in cmd:
                found.add(int(entry.name))
        grew = True
        while grew:
            kids = {pid for pid, ppid in procs.items() if ppid in found} - found
            grew = bool(kids)
            found |= kids
        return sorted(found)

    def raylet_of(self, node_id: str) -> int:
        """The PID of the raylet that runs node `node_id`."""
        for pid in self.pids():
            with contextlib.suppress(OSError):
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if cmd and cmd[0].endswith(b"/raylet") and f"--node_id={node_id}".encode() in cmd:
                    return pid
        raise AssertionError(f"no raylet of node {node_id} in {self.temp}")

    def busy_workers(self) -> list[int]:
        """Worker processes of this cluster running one of our jobs (their title is the task)."""
        busy = []
        for pid in self.pids():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::_run_on_node"):
                    busy.append(pid)
        return busy

    def stop(self) -> None:
        for _ in range(3):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
        shutil.rmtree(self.temp, ignore_errors=True)


# --------------------------------------------------------------------------- SLURM


class SlurmCluster:
    """A one-node SLURM cluster on 127.0.0.1 (Debian's slurm-wlm): `slurmctld` and `slurmd`
    started by hand with a configuration, state and ports of their own (so clusters of parallel
    tests do not meet) and munge for authentication (one `munged` per host, shared). Jobs run as
    the user who submits them, so slurmd must run as root. Clients find the cluster through
    SLURM_CONF (`env()`). Stopped by PID; `stop` cancels its jobs first. With `gpus`, the node
    has that many GPUs that SLURM schedules, with no device behind them (`_fake_gpus`)."""

    def __init__(self, cpus: int = 2, gpus: int = 0, message_timeout: int = 10):
        # message_timeout: how long a client (squeue, sbatch, scancel) waits for an answer,
        # and tries to connect, before it fails (SLURM's MessageTimeout, default 10 s)
        self.cpus, self.gpus, self.message_timeout = cpus, gpus, message_timeout
        self.base = Path(tempfile.mkdtemp(prefix="slurm-", dir=_shared_tmp()))
        self.conf = self.base / "slurm.conf"

    @staticmethod
    def _munged() -> None:
        munge = shutil.which("munge")
        munged = shutil.which("munged") or "/usr/sbin/munged"
        if munge is None or not os.path.exists(munged):
            raise ServiceUnavailable("munge is not installed (Debian: munge)")
        if subprocess.run([munge, "-n"], capture_output=True).returncode == 0:
            return  # a munged is up
        run_dir = Path("/run/munge")
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(run_dir, "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", munged], check=True, capture_output=True)
        deadline = time.time() + 20
        while subprocess.run([munge, "-n"], capture_output=True).returncode != 0:
            if time.time() > deadline:
                raise AssertionError("munged did not start")
            time.sleep(0.2)

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self) -> SlurmCluster:
        ctld, slurmd = shutil.which("slurmctld"), shutil.which("slurmd")
        if not (ctld and slurmd and shutil.which("sbatch")):
            raise ServiceUnavailable("SLURM is not installed (Debian: slurm-wlm)")
        if os.geteuid() != 0:
            raise ServiceUnavailable("a test SLURM cluster needs root (slurmd runs the jobs)")
        self._munged()
        for d in ("state", "spool", "log"):
            (self.base / d).mkdir()
        b = self.base
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=sweeptest",
                    "SlurmctldHost=localhost(127.0.0.1)",
                    f"SlurmctldPort={free_port()}",
                    f"SlurmdPort={free_port()}",
                    "SlurmUser=root",
                    "AuthType=auth/munge",
                    f"StateSaveLocation={b}/state",
                    f"SlurmdSpoolDir={b}/spool",
                    f"SlurmctldPidFile={b}/slurmctld.pid",
                    f"SlurmdPidFile={b}/slurmd.pid",
                    f"SlurmctldLogFile={b}/log/slurmctld.log",
                    f"SlurmdLogFile={b}/log/slurmd.log",
                    # no systemd, no cgroups: plain process tracking, no task binding
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_CPU",
                    "SchedulerType=sched/builtin",
                    "ReturnToService=2",
                    "MpiDefault=none",
                    "SlurmdParameters=config_overrides",  # CPUs= as written, not as detected
                    "KillWait=5",  # scancel: SIGTERM, then SIGKILL 5 s later
                    "MinJobAge=600",  # squeue lists ended jobs (and their state) for 10 min
                    f"MessageTimeout={self.message_timeout}",
                    *(["GresTypes=gpu"] if self.gpus else []),
                    f"NodeName={socket.gethostname()} NodeAddr=127.0.0.1 CPUs={self.cpus} "
                    + (f"Gres=gpu:{self.gpus} " if self.gpus else "")
                    + "State=UNKNOWN",
                    "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )
        # slurmd 22.05 loads a cgroup plugin even with proctrack/linuxproc
        (self.base / "cgroup.conf").write_text("CgroupPlugin=cgroup/v1\n")
        env = self.env()
        try:
            if self.gpus:
                self._fake_gpus()
            subprocess.run([ctld, "-f", str(self.conf)], env=env, check=True, capture_output=True)
            subprocess.run([slurmd, "-f", str(self.conf)], env=env, check=True, capture_output=True)
            deadline = time.time() + 60
            while True:
                out = subprocess.run(
                    ["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True
                )
                if out.returncode == 0 and out.stdout.strip() in ("idle", "mixed", "allocated"):
                    break
                if time.time() > deadline:
                    raise AssertionError(f"SLURM did not come up: {out.stdout} {out.stderr}")
                time.sleep(0.5)
        except BaseException:
            self.stop()
            raise
        return self

    def _fake_gpus(self) -> None:
        """`gpus` GPUs that SLURM schedules and hands out (CUDA_VISIBLE_DEVICES, SLURM_JOB_GPUS)
        with nothing behind them: slurmd wants a character device per GPU, so each is a copy of
        /dev/null's (major 1, minor 3) in the cluster's own folder."""
        for i in range(self.gpus):
            try:
                os.mknod(self.base / f"gpu{i}", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
            except OSError as e:
                raise ServiceUnavailable(f"cannot make a fake GPU device ({e})") from None
        files = f"{self.base}/gpu[0-{self.gpus - 1}]" if self.gpus > 1 else f"{self.base}/gpu0"
        (self.base / "gres.conf").write_text(f"AutoDetect=off\nName=gpu File={files}\n")

    def _pid(self, name: str) -> int | None:
        """The PID `name` (slurmctld, slurmd) wrote, while that process still runs."""
        with contextlib.suppress(OSError, ValueError):
            pid = int((self.base / f"{name}.pid").read_text().strip())
            if Path(f"/proc/{pid}").exists():
                return pid
        return None

    def answers(self) -> bool:
        """Whether the controller answers a client now."""
        out = subprocess.run(["squeue", "-h"], env=self.env(), capture_output=True, timeout=60)
        return out.returncode == 0

    def stop_controller(self) -> None:
        """Stop `slurmctld` by its PID (SIGTERM: it saves its state and exits), as a controller
        restart or crash does; `slurmd` and the jobs it runs go on."""
        pid = self._pid("slurmctld")
        assert pid is not None, "slurmctld is not running"
        os.kill(pid, signal.SIGTERM)
        deadline = time.time() + 30
        while Path(f"/proc/{pid}").exists() and time.time() < deadline:
            time.sleep(0.1)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)
        while Path(f"/proc/{pid}").exists():
            time.sleep(0.1)

    def start_controller(self, timeout: float = 60) -> None:
        """Start `slurmctld` again on the saved state (its jobs and their states come back)."""
        ctld = shutil.which("slurmctld")
        assert ctld is not None and self._pid("slurmctld") is None
        subprocess.run(
            [ctld, "-f", str(self.conf)], env=self.env(), check=True, capture_output=True
        )
        deadline = time.time() + timeout
        while not self.answers():
            assert time.time() < deadline, "slurmctld did not answer again"
            time.sleep(0.2)

    def jobs(self) -> dict[str, tuple[str, str, str]]:
        """{job id: (state, start, end)} of every job the controller knows, ended ones too (it
        keeps them MinJobAge = 10 min); times as SLURM writes them (ISO, to the second)."""
        out = subprocess.run(
            ["squeue", "-h", "-t", "all", "-o", "%i %T %S %e"],
            env=self.env(),
            capture_output=True,
            text=True,
            check=True,
        )
        return {
            job: (state, start, end)
            for job, state, start, end in map(str.split, out.stdout.splitlines())
        }

    def squeue(self) -> list[str]:
        """`jobid state` of every job the cluster still runs or waits to run."""
        out = subprocess.run(
            ["squeue", "-h", "-o", "%i %T"], env=self.env(), capture_output=True, text=True
        )
        return [ln for ln in out.stdout.splitlines() if ln.split()[-1] not in ("COMPLETED",)]

    def stop(self) -> None:
        env = self.env()
        with contextlib.suppress(Exception):
            subprocess.run(["scancel", "--full", "-u", str(os.getuid())], env=env, timeout=30)
        for name in ("slurmd", "slurmctld"):
            pid_file = self.base / f"{name}.pid"
            with contextlib.suppress(OSError, ValueError, ProcessLookupError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
        time.sleep(1)
        for name in ("slurmd", "slurmctld"):
            pid_file = self.base / f"{name}.pid"
            with contextlib.suppress(OSError, ValueError, ProcessLookupError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
        shutil.rmtree(self.base, ignore_errors=True)
