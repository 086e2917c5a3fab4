"""Multi-host runs on a test cluster made of network namespaces on this machine.

``scripts/testcluster.sh up 2`` makes two test hosts (namespaces ``mpiml-h1``,
``mpiml-h2``, joined by a bridge) and MPICH's ``mpiexec`` starts the ranks inside them
through ``scripts/cluster-launcher``, so ranks on different hosts talk by TCP over the
test hosts' addresses. Every test runs 2 hosts x 2 ranks.

Run as root: ``python -m pytest -m cluster tests/test_cluster.py``. Elsewhere (not root,
no ``ip``, namespaces not permitted) every test is skipped with the reason.

Run as a script, this file is the SPMD program some tests start on the cluster:
``mpiexec ... python tests/test_cluster.py probe BRIDGE_ADDRESS`` (where each rank runs,
and proof that its messages cross hosts), ``... matmul ALGO OUT.npy`` or
``... shared OUT.npz`` (shared-memory matrices: one array per host).
"""

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTCLUSTER = ROOT / "scripts" / "testcluster.sh"
LAUNCHER = ROOT / "scripts" / "cluster-launcher"
VENV_BIN = Path(sys.executable).parent
HOSTS = ("mpiml-h1", "mpiml-h2")
SLOTS = 2
NPROCS = len(HOSTS) * SLOTS
SUBNET = os.environ.get("MPIML_CLUSTER_SUBNET", "10.213.7")
BRIDGE_ADDRESS = f"{SUBNET}.1"
CLUSTER_DIR = Path(os.environ.get("MPIML_CLUSTER_DIR", "/tmp/mpiml-testcluster"))
LOCK_FILE = Path("/tmp/mpiml-testcluster.lock")
PROBE_BYTES = 4 << 20

pytestmark = [pytest.mark.cluster]


# -- the probe program (runs on the cluster) -------------------------------------------------

def _own_tcp_peers():
    """Remote IPv4 addresses of the ESTABLISHED TCP sockets this process holds."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/self/fd/{fd}")
            if link.startswith("socket:["):
                inodes.add(link[len("socket:["):-1])
    peers = set()
    with open("/proc/self/net/tcp") as table:  # the table of this process's namespace
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[3] == "01" and fields[9] in inodes:
                host = fields[2].split(":")[0]
                peers.add(socket.inet_ntoa(bytes.fromhex(host)[::-1]))
    return sorted(peers)


def _interface_bytes(name="mpiml0"):
    path = Path("/sys/class/net") / name / "statistics"
    if not path.is_dir():
        return None
    return int((path / "tx_bytes").read_text()) + int((path / "rx_bytes").read_text())


def _probe(comm, bridge_address):
    """Where this rank runs, and proof that its messages cross hosts by TCP."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.connect((bridge_address, 9))  # no packet is sent; picks the source address
        address = udp.getsockname()[0]
    peer = (comm.rank + comm.size // 2) % comm.size
    comm.Barrier()
    before = _interface_bytes()
    payload = np.full(PROBE_BYTES // 8, float(comm.rank), dtype=np.float64)
    received = np.empty_like(payload)
    comm.Sendrecv(payload, peer, 7, received, peer, 7)
    peer_address = comm.sendrecv(address, peer, 8, peer, 8)
    comm.Barrier()
    after = _interface_bytes()
    total = np.zeros(1)
    comm.Allreduce(np.array([float(comm.rank + 1)]), total)
    return {
        "rank": comm.rank,
        "hostname": socket.gethostname(),
        "netns_inode": os.stat("/proc/self/ns/net").st_ino,
        "address": address,
        "peer": peer,
        "peer_address_received": peer_address,
        "received_from_peer_ok": bool(np.all(received == float(peer))),
        "allreduce": float(total[0]),
        "tcp_peers": _own_tcp_peers(),
        "interface_bytes": None if before is None else after - before,
    }


def _probe_main(bridge_address):
    import mpiml

    def body(comm):
        rows = comm.gather(_probe(comm, bridge_address))
        if comm.rank == 0:
            print(json.dumps(rows), flush=True)

    mpiml.run(body)


def _matmul_main(algo, out):
    """A @ B with mpiml.linalg across the ranks; rank 0 saves the product to ``out``."""
    import mpiml
    from mpiml.linalg import matmul

    def body(comm):
        a = b = None
        if comm.rank == 0:
            rng = np.random.default_rng(3)
            a, b = rng.normal(size=(67, 45)), rng.normal(size=(45, 52))
        c = matmul(a, b, comm, algo=algo)
        if comm.rank == 0:
            np.save(out, c)
            np.testing.assert_allclose(c, a @ b, rtol=1e-12, atol=1e-12)

    mpiml.run(body)


SHARED_SHAPES = ((67, 45, 52), (1, 3, 1))   # the second leaves blocks empty on a 2x2 grid


def _shared_main(out):
    """Shared and private matrices on a 2x2 grid; rank 0 saves every result to ``out``
    (an .npz) with each rank's node size and node-array shape; every rank saves the
    /dev/shm paths it maps to ``out.segments-RANK.json``."""
    import mpiml
    from mpiml.linalg import DistributedMatrix, ProcessGrid, add, cannon, scale, summa

    def results(grid, shape, shared):
        m, k, n = shape
        a = DistributedMatrix.random((m, k), grid, seed=3, shared=shared)
        b = DistributedMatrix.random((k, n), grid, seed=4, shared=shared)
        a2 = DistributedMatrix.fromfunction(lambda i, j: i - 0.5 * j, (m, k), grid,
                                            shared=shared)
        made = {"a": a, "b": b, "add": add(a, a2, alpha=2, beta=-1), "scale": scale(a, 3.0),
                "summa": summa(a, b, panel=7), "cannon": cannon(a, b)}
        assert all(x.shared == shared for x in made.values())
        return {name: x.gather() for name, x in made.items()}, a

    def body(comm):
        grid = ProcessGrid.square(comm)
        saved = {}
        for index, shape in enumerate(SHARED_SHAPES):
            private, _ = results(grid, shape, False)
            shared, a = results(grid, shape, True)
            layout = comm.gather([len(grid.node_ranks()), *a.storage.shape])
            if comm.rank == 0:
                for name in shared:
                    np.testing.assert_allclose(shared[name], private[name], rtol=1e-13,
                                               atol=1e-13)
                    saved[f"{index}_{name}"] = shared[name]
                saved[f"{index}_layout"] = np.array(layout)
        maps = sorted({line.split()[5] for line in open("/proc/self/maps")
                       if len(line.split()) >= 6 and line.split()[5].startswith("/dev/shm/")})
        Path(f"{out}.segments-{comm.rank}.json").write_text(json.dumps(maps))
        if comm.rank == 0:
            np.savez(out, **saved)

    mpiml.run(body)


# -- the test cluster ------------------------------------------------------------------------

def _cannot_make_namespaces():
    """The reason namespaces cannot be made here, or None."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if any(k in os.environ for k in ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK")):
        return "cluster tests start their own mpiexec; run them with plain pytest, not under mpiexec"
    if os.geteuid() != 0:
        return "needs root to create network namespaces (run the cluster tests as root)"
    for tool in ("ip", "unshare"):
        if shutil.which(tool) is None:
            return f"the '{tool}' command is not installed"
    name = f"mpiml-chk{os.getpid() % 100000}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    if made.returncode != 0:
        return f"'ip netns add' is not permitted here: {made.stderr.strip()}"
    return None


def _child_env(**extra):
    """Environment for a launcher started from this test: no MPI state of our own."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "PMIX_", "HYDRA_", "HYDI_", "MPI_LOCAL", "OMPI_"))}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["MPIR_CVAR_CH4_PROGRESS_THROTTLE"] = "1"
    env["MPIML_CLUSTER_DIR"] = str(CLUSTER_DIR)
    env["MPIML_CLUSTER_SUBNET"] = SUBNET
    env.update(extra)
    return env


def _mpiexec():
    found = shutil.which("mpiexec", path=str(VENV_BIN)) or shutil.which("mpiexec")
    if found is None:
        pytest.skip("no mpiexec found (install the mpich extra)")
    return found


def _namespace_pids(ns):
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _kill_host(ns):
    for pid in _namespace_pids(ns):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class Cluster:
    """The running test cluster: its hostfile and how to start programs on it."""

    def __init__(self, hostfile):
        self.hostfile = hostfile
        self.mpiexec = _mpiexec()

    def command(self, nprocs, argv, hostfile=None):
        return [self.mpiexec, "-f", str(hostfile or self.hostfile), "-launcher", "ssh",
                "-launcher-exec", str(LAUNCHER), "-localhost", BRIDGE_ADDRESS,
                "-n", str(nprocs), *map(str, argv)]

    def start(self, nprocs, argv, hostfile=None, **env):
        """Start ``argv`` on ``nprocs`` ranks across the hosts; returns the Popen."""
        return subprocess.Popen(self.command(nprocs, argv, hostfile), cwd=ROOT,
                                env=_child_env(**env), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)

    def run(self, nprocs, argv, timeout, hostfile=None, **env):
        return _finish(self.start(nprocs, argv, hostfile, **env), timeout)

    def host_hostfile(self, tmp_path, *hosts):
        """A hostfile that names only the given test hosts."""
        addresses = {ns: addr for addr, ns in
                     (line.split() for line in (CLUSTER_DIR / "hosts.map").read_text().splitlines())}
        path = tmp_path / "some.hosts"
        path.write_text("".join(f"{addresses[h]}:{SLOTS}\n" for h in hosts))
        return path


def _finish(proc, timeout):
    """Wait for a job; on timeout kill it (and whatever it left on the test hosts) and fail."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        for ns in HOSTS:
            _kill_host(ns)
        out, err = proc.communicate()
        pytest.fail(f"job did not end within {timeout} s\nstdout:\n{out}\nstderr:\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _local_run(nprocs, argv, timeout):
    """The same program on this one host (the root namespace), for reference."""
    cmd = [_mpiexec(), "-n", str(nprocs), *map(str, argv)]
    return _finish(subprocess.Popen(cmd, cwd=ROOT, env=_child_env(), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, start_new_session=True),
                   timeout)


def _ok(result):
    assert result.returncode == 0, (
        f"{' '.join(result.args)} exited {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def _last_json(result):
    return json.loads(_ok(result).stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cluster():
    reason = _cannot_make_namespaces()
    if reason:
        pytest.skip(reason)
    with open(LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one test cluster at a time on this machine
        env = _child_env(MPIML_CLUSTER_SLOTS=str(SLOTS))
        subprocess.run([str(TESTCLUSTER), "down"], env=env, capture_output=True)
        up = subprocess.run([str(TESTCLUSTER), "up", str(len(HOSTS))], env=env,
                            capture_output=True, text=True, timeout=60)
        try:
            assert up.returncode == 0, f"testcluster.sh up failed:\n{up.stdout}\n{up.stderr}"
            yield Cluster(CLUSTER_DIR / "hosts")
        finally:
            subprocess.run([str(TESTCLUSTER), "down"], env=env, capture_output=True,
                           timeout=60)


# -- tests -----------------------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_cluster_scripts_status_and_hostfile(cluster):
    status = subprocess.run([str(TESTCLUSTER), "status"], env=_child_env(),
                            capture_output=True, text=True, timeout=30)
    assert status.returncode == 0, status.stderr
    for ns in HOSTS:
        assert ns in status.stdout
    lines = cluster.hostfile.read_text().split()
    assert lines == [f"{SUBNET}.{10 + i}:{SLOTS}" for i in range(1, len(HOSTS) + 1)]


@pytest.mark.timeout(120)
def test_ranks_run_on_separate_hosts_and_talk_by_tcp(cluster):
    result = cluster.run(NPROCS, [sys.executable, Path(__file__), "probe", BRIDGE_ADDRESS],
                         timeout=100)
    rows = _last_json(result)
    assert [r["rank"] for r in rows] == list(range(NPROCS))
    inodes = {ns: os.stat(f"/run/netns/{ns}").st_ino for ns in HOSTS}
    addresses = {ns: f"{SUBNET}.{10 + i}" for i, ns in enumerate(HOSTS, start=1)}
    for row in rows:
        host = HOSTS[row["rank"] // SLOTS]  # the hostfile fills each host's slots in order
        peer_host = HOSTS[row["peer"] // SLOTS]
        assert peer_host != host
        assert row["hostname"] == host
        assert row["netns_inode"] == inodes[host], "rank is not inside its host's namespace"
        assert row["netns_inode"] != os.stat("/proc/self/ns/net").st_ino
        assert row["address"] == addresses[host]
        assert row["peer_address_received"] == addresses[peer_host]
        assert row["received_from_peer_ok"]
        assert row["allreduce"] == NPROCS * (NPROCS + 1) / 2
        # this very process holds a TCP connection to the other host's address ...
        assert addresses[peer_host] in row["tcp_peers"], row["tcp_peers"]
        # ... and the payload went through the host's virtual network interface
        assert row["interface_bytes"] >= PROBE_BYTES, row["interface_bytes"]
    for row in rows:
        allowed = set(addresses.values()) | {BRIDGE_ADDRESS, "127.0.0.1"}
        assert set(row["tcp_peers"]) <= allowed, row["tcp_peers"]


@pytest.mark.timeout(60)
def test_launcher_refuses_unknown_host(cluster):
    out = subprocess.run([str(LAUNCHER), "-x", "192.0.2.99", "true"], env=_child_env(),
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "unknown test host '192.0.2.99'" in out.stderr



# -- apps across hosts -----------------------------------------------------------------------

def _sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _assert_same_model(path_a, path_b, data):
    """Two model files hold the same model: same state, bit for bit, same predictions."""
    import mpiml
    a, b = mpiml.load(path_a), mpiml.load(path_b)
    assert type(a) is type(b)
    meta_a, arrays_a = a._get_state()
    meta_b, arrays_b = b._get_state()
    assert meta_a == meta_b
    assert sorted(arrays_a) == sorted(arrays_b)
    for name in arrays_a:
        np.testing.assert_array_equal(arrays_a[name], arrays_b[name], err_msg=name)
    X = np.load(data)["X"]
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


@pytest.fixture(scope="module")
def train_data(tmp_path_factory):
    """A small classification set in an .npz on the filesystem every host shares."""
    rng = np.random.default_rng(8)
    X = rng.normal(size=(1200, 8))
    y = (X[:, 0] + 0.5 * X[:, 1] * X[:, 2] - X[:, 3] + 0.3 * rng.normal(size=1200) > 0)
    path = tmp_path_factory.mktemp("cluster-data") / "train.npz"
    np.savez(path, X=X, y=y.astype(np.int64))
    return path


def _train_argv(model, data, out, *flags):
    return [sys.executable, ROOT / "apps" / "train.py", model, "--data", data, "--out", out,
            "--test-fraction", "0", "--seed", "0", "--json", *flags]


FOREST_FLAGS = ("--n-estimators", "8", "--max-depth", "6", "--random-state", "0")
GBDT_FLAGS = ("--n-estimators", "12", "--max-depth", "3", "--learning-rate", "0.2",
              "--random-state", "0")


@pytest.mark.timeout(240)
@pytest.mark.parametrize("algo", ["summa", "cannon"])
def test_linalg_matmul_across_hosts_matches_one_host(cluster, tmp_path, algo):
    program = [sys.executable, Path(__file__), "matmul", algo]
    _ok(cluster.run(NPROCS, [*program, tmp_path / "across.npy"], timeout=110))
    _ok(_local_run(NPROCS, [*program, tmp_path / "one.npy"], timeout=110))
    # same grid, same blocks, same arithmetic on every rank: the same bits
    np.testing.assert_array_equal(np.load(tmp_path / "across.npy"),
                                  np.load(tmp_path / "one.npy"))


@pytest.mark.timeout(240)
def test_shared_matrices_across_hosts_match_one_host(cluster, tmp_path):
    program = [sys.executable, Path(__file__), "shared"]
    across, one = tmp_path / "across.npz", tmp_path / "one.npz"
    _ok(cluster.run(NPROCS, [*program, across], timeout=110))
    _ok(_local_run(NPROCS, [*program, one], timeout=110))
    across, one = np.load(across), np.load(one)
    for index, (m, k, _n) in enumerate(SHARED_SHAPES):
        # each test host has its own array, for its grid row: the rows of two blocks
        rows = [m - m // 2, m // 2]
        assert across[f"{index}_layout"].tolist() == [[SLOTS, rows[r // SLOTS], k]
                                                      for r in range(NPROCS)]
        assert one[f"{index}_layout"].tolist() == [[NPROCS, m, k]] * NPROCS
        a, b = one[f"{index}_a"], one[f"{index}_b"]
        for name in ("a", "b", "add", "scale", "summa", "cannon"):
            np.testing.assert_array_equal(across[f"{index}_{name}"], one[f"{index}_{name}"],
                                          err_msg=name)
        np.testing.assert_allclose(one[f"{index}_summa"], a @ b, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(one[f"{index}_cannon"], a @ b, rtol=1e-12, atol=1e-12)
    for path in tmp_path.glob("*.segments-*.json"):
        left = [p for p in json.loads(path.read_text()) if os.path.exists(p)]
        assert not left, f"{path.name}: segments left in /dev/shm: {left}"


@pytest.mark.timeout(240)
@pytest.mark.parametrize("algo", ["summa", "cannon"])
def test_matmul_app_across_hosts_matches_one_host(cluster, algo):
    argv = [sys.executable, ROOT / "apps" / "matmul.py", "--m", "90", "--k", "77", "--n", "64",
            "--algo", algo, "--check", "--json"]
    across = _last_json(cluster.run(NPROCS, argv, timeout=110))
    one_host = _last_json(_local_run(NPROCS, argv, timeout=110))
    assert across["ranks"] == one_host["ranks"] == NPROCS
    assert across["grid"] == one_host["grid"]
    assert across["rel_err"] < 1e-12
    # same grid, same blocks, same arithmetic on every rank: the same product
    assert across["rel_err"] == one_host["rel_err"]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("model, flags", [("forest", FOREST_FLAGS), ("gbdt", GBDT_FLAGS)])
def test_model_trained_across_hosts_is_identical(cluster, train_data, tmp_path, model, flags):
    across = _last_json(cluster.run(
        NPROCS, _train_argv(model, train_data, tmp_path / "across.mpiml", *flags), timeout=110))
    one_host = _last_json(_local_run(
        NPROCS, _train_argv(model, train_data, tmp_path / "one.mpiml", *flags), timeout=110))
    one_rank = _last_json(_local_run(
        1, _train_argv(model, train_data, tmp_path / "one-rank.mpiml", *flags), timeout=110))
    assert across["ranks"] == one_host["ranks"] == NPROCS and one_rank["ranks"] == 1
    assert across["train_score"] == one_host["train_score"] == one_rank["train_score"]
    _assert_same_model(tmp_path / "across.mpiml", tmp_path / "one.mpiml", train_data)
    _assert_same_model(tmp_path / "across.mpiml", tmp_path / "one-rank.mpiml", train_data)


class _Job:
    """A job on the cluster whose output is read while it runs."""

    def __init__(self, proc):
        import threading
        self.proc = proc
        self.lines = []
        self._readers = [threading.Thread(target=self._read, args=(stream,), daemon=True)
                         for stream in (proc.stdout, proc.stderr)]
        for reader in self._readers:
            reader.start()

    def _read(self, stream):
        for line in stream:
            self.lines.append(line)

    def wait_for(self, condition, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            if self.proc.poll() is not None:
                pytest.fail(f"the job ended (status {self.proc.returncode}) before {what}:\n"
                            + "".join(self.lines))
            time.sleep(0.02)
        pytest.fail(f"no sign of {what} within {timeout} s:\n" + "".join(self.lines))

    def wait(self, timeout):
        """Seconds until the job ended; kills it and fails the test after ``timeout``."""
        start = time.monotonic()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            for ns in HOSTS:
                _kill_host(ns)
            self.proc.wait()
            pytest.fail(f"job still running {timeout} s after losing a host (hang):\n"
                        + "".join(self.lines))
        for reader in self._readers:
            reader.join(timeout=10)
        return time.monotonic() - start


def _ranks_running_on(ns, count):
    """True once ``count`` python processes run inside namespace ``ns``."""
    def check():
        found = 0
        for pid in _namespace_pids(ns):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/exe").resolve().name.startswith("python"):
                    found += 1
        return found >= count
    return check


@pytest.mark.timeout(300)
@pytest.mark.parametrize("lost", HOSTS, ids=["lose-rank0-host", "lose-other-host"])
def test_lost_host_ends_job_and_keeps_earlier_model(cluster, train_data, tmp_path, lost):
    out = tmp_path / "model.mpiml"
    _ok(cluster.run(NPROCS, _train_argv("gbdt", train_data, out, *GBDT_FLAGS), timeout=110))
    earlier = _sha256(out)
    before = sorted(p.name for p in tmp_path.iterdir())

    # a run that would take hours; rank 0 prints "gbdt: iter I ..." once training is under way
    long_run = ("--n-estimators", "100000", "--max-depth", "3", "--random-state", "1")
    job = _Job(cluster.start(NPROCS, _train_argv("gbdt", train_data, out, *long_run),
                             PYTHONUNBUFFERED="1"))
    job.wait_for(lambda: any(line.startswith("gbdt: iter") for line in job.lines), 100,
                 "training progress")
    assert _ranks_running_on(lost, SLOTS)()
    _kill_host(lost)
    seconds = job.wait(timeout=60)

    assert job.proc.returncode != 0, "".join(job.lines)
    assert seconds < 60
    assert _sha256(out) == earlier, "the model saved earlier under the output name changed"
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == before, f"files left behind: {sorted(set(left) - set(before))}"
    for ns in HOSTS:
        # the launcher tears the surviving host's ranks down right after it returns
        running = _ranks_running_on(ns, 1)
        deadline = time.monotonic() + 10
        while running() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not running(), f"ranks still running on {ns} 10 s after the job ended"


@pytest.mark.timeout(300)
def test_checkpointed_training_resumes_on_remaining_host(cluster, train_data, tmp_path):
    flags = ("--n-estimators", "40", "--max-depth", "3", "--learning-rate", "0.1",
             "--random-state", "0")
    full = tmp_path / "full.mpiml"
    _ok(cluster.run(NPROCS, _train_argv("gbdt", train_data, full, *flags), timeout=110))

    checkpoint = tmp_path / "checkpointed.mpiml"
    job = _Job(cluster.start(NPROCS, _train_argv("gbdt", train_data, checkpoint, *flags,
                                                 "--checkpoint-every", "2"),
                             PYTHONUNBUFFERED="1"))
    job.wait_for(checkpoint.exists, 100, "a first checkpoint")
    _kill_host(HOSTS[1])
    job.wait(timeout=60)
    if job.proc.returncode == 0:
        pytest.fail("training finished before the host was lost; raise --n-estimators")
    import mpiml
    saved = mpiml.load(checkpoint).n_iter_
    assert 0 < saved < 40, f"the checkpoint holds {saved} of 40 iterations"

    remaining = cluster.host_hostfile(tmp_path, HOSTS[0])
    resumed = tmp_path / "resumed.mpiml"
    _ok(cluster.run(SLOTS, _train_argv("gbdt", train_data, resumed, *flags,
                                       "--resume", checkpoint), timeout=110,
                    hostfile=remaining))
    _assert_same_model(resumed, full, train_data)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("script", ["matmul.sbatch", "train.sbatch"])
def test_slurm_scripts_run_across_hosts(cluster, train_data, tmp_path, script):
    """The batch scripts as submitted, with an ``srun`` that starts the step on the test hosts."""
    shim = tmp_path / "bin" / "srun"
    shim.parent.mkdir()
    flags = " ".join(cluster.command(NPROCS, [])[1:-2])
    shim.write_text("#!/bin/sh\n"
                    "# srun stand-in: drop srun's own options, start the step with mpiexec\n"
                    "while [ $# -gt 0 ]; do case $1 in --*) shift ;; *) break ;; esac; done\n"
                    f'exec {cluster.mpiexec} {flags} -n "$SLURM_NTASKS" "$@"\n')
    shim.chmod(0o755)
    out = tmp_path / "models" / "gbdt.mpiml"
    env = _child_env(SLURM_SUBMIT_DIR=str(ROOT), SLURM_NTASKS=str(NPROCS),
                     SLURM_CPUS_PER_TASK="1", MPIML_VENV=str(VENV_BIN.parent),
                     N="64", ALGO="cannon", DATA=str(train_data), OUT=str(out), TREES="4",
                     CHECKPOINT_EVERY="2")
    env["PATH"] = f"{shim.parent}{os.pathsep}{env['PATH']}"
    proc = subprocess.Popen(["bash", str(ROOT / "scripts" / "slurm" / script)], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    report = _last_json(_finish(proc, timeout=200))
    assert report["ranks"] == NPROCS
    if script == "matmul.sbatch":
        assert report["algo"] == "cannon" and report["n"] == 64
    else:
        assert report["model"] == "gbdt" and out.is_file()

if __name__ == "__main__":
    if sys.argv[1:2] == ["probe"]:
        _probe_main(sys.argv[2])
    elif sys.argv[1:2] == ["matmul"]:
        _matmul_main(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["shared"]:
        _shared_main(sys.argv[2])
    else:
        sys.exit(f"usage: {sys.argv[0]} probe BRIDGE_ADDRESS | matmul ALGO OUT.npy | "
                 f"shared OUT.npz")
