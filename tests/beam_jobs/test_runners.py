"""The scoring job on runners other than the DirectRunner, against a DirectRunner run of the same
config (tests/beam_jobs/conftest: two English teachers in `best` mode, one German teacher):

* Beam's portable protocol (what Dataflow Runner v2 speaks): `PortableRunner` with the embedded
  job service, and the SDK harness in separate processes started by a worker pool
  (`--environment_type=EXTERNAL`, `apache_beam.runners.worker.worker_pool_main`): every DoFn,
  coder and side input crosses a process boundary through the Fn API;
* Dask (`--runner DaskRunner`, `beam_jobs.dask_runner`) on a `distributed.LocalCluster` of 2
  worker processes, addressed with `--dask_client_address`.

Both must write byte-identical shards and the same manifests (counters included)."""

import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest

from beam_jobs import job_config, pipeline
from teacher_scoring.records import manifest as manifest_lib

pytestmark = pytest.mark.slow


def _shard_bytes(output_dir) -> dict[str, bytes]:
    out = {}
    for path in sorted(pathlib.Path(output_dir).glob("*/*.tfrecord*")):
        out[f"{path.parent.name}/{path.name}"] = path.read_bytes()
    return out


def _manifests(output_dir) -> dict[str, manifest_lib.Manifest]:
    return {language: manifest_lib.read_manifest(str(pathlib.Path(output_dir, language)))
            for language in ("en", "de")}


def _run(workspace, output_dir, args):
    config = job_config.from_dict(workspace.config(output_dir), source="test-config")
    return pipeline.run_job(config, args)


def _assert_same_output(reference_dir, other_dir, runner):
    reference, other = _shard_bytes(reference_dir), _shard_bytes(other_dir)
    assert sorted(reference) == sorted(other) == [
        "de/de-00000-of-00001.tfrecord.gz", "en/en-00000-of-00002.tfrecord.gz",
        "en/en-00001-of-00002.tfrecord.gz"]
    for name, data in reference.items():
        assert len(data) > 1000, name
        assert other[name] == data, f"{name}: {runner} wrote different bytes"
    for language, manifest in _manifests(reference_dir).items():
        theirs = _manifests(other_dir)[language]
        assert theirs.languages == manifest.languages, language
        assert theirs.counters == manifest.counters, language
        assert theirs.dropped == manifest.dropped, language
        assert manifest.counters["documents"] > 0 and manifest.counters["en_a/scored" if
                                                                       language == "en" else
                                                                       "de_a/scored"] > 0


@pytest.fixture(scope="module")
def direct_run(workspace, tmp_path_factory):
    out = tmp_path_factory.mktemp("direct") / "scored"
    _run(workspace, out, ["--runner=DirectRunner", "--direct_running_mode=in_memory"])
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the worker pool exited with {process.returncode}")
        try:
            with socket.create_connection(("localhost", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"the worker pool did not listen on port {port} in {timeout} s")


@pytest.fixture
def worker_pool(tmp_path):
    """Beam's SDK worker pool in its own process; it starts each SDK harness as a further
    process (`python -c ...SdkHarness...`, hence this interpreter's folder first on PATH).
    Yields its address, the process and its log file."""
    port = _free_port()
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    log = tmp_path / "worker_pool.log"
    with open(log, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
             f"--service_port={port}"], env=env, stdout=stderr, stderr=stderr)
    try:
        _wait_for_port(port, process)
        yield f"localhost:{port}", process, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_portable_runner_with_an_external_sdk_harness_writes_the_same_bytes(
        workspace, direct_run, worker_pool, tmp_path, monkeypatch):
    address, pool, log = worker_pool
    # The launcher's progress logging every second instead of every minute: it must not
    # freeze the counters the manifests get (the portable result caches its first metrics()).
    monkeypatch.setattr(pipeline._wait, "__defaults__", (1.0,))
    out = tmp_path / "portable"
    result = _run(workspace, out, ["--runner=PortableRunner", "--job_endpoint=embed",
                                   "--environment_type=EXTERNAL",
                                   f"--environment_config={address}"])
    assert pool.poll() is None
    # The job's DoFns ran in an SDK harness process the pool started, not in this process.
    assert "Starting worker with command" in log.read_text(errors="replace")
    assert result.dead_letters == 0
    _assert_same_output(direct_run, out, "PortableRunner")


@pytest.fixture
def dask_cluster():
    """A Dask scheduler with 2 worker processes (one thread each), as an existing cluster the
    job is pointed at."""
    from dask import distributed

    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, memory_limit=None)
    client = distributed.Client(cluster)
    try:
        yield cluster, client
    finally:
        client.close()
        cluster.close()


def test_dask_runner_on_two_worker_processes_writes_the_same_bytes(workspace, direct_run,
                                                                   dask_cluster, tmp_path,
                                                                   monkeypatch):
    from beam_jobs import dask_runner

    cluster, client = dask_cluster
    monkeypatch.setattr(pipeline._wait, "__defaults__", (1.0,))
    out = tmp_path / "dask"
    result = _run(workspace, out, ["--runner=DaskRunner",
                                   f"--dask_client_address={cluster.scheduler_address}",
                                   "--dask_npartitions=4"])
    assert result.dead_letters == 0
    _assert_same_output(direct_run, out, "DaskRunner")
    # The work was spread over both worker processes.
    bundles = client.run(dask_runner.bundles_run)
    assert len(bundles) == 2
    assert all(sum(steps.values()) > 0 for steps in bundles.values()), bundles
    assert any("RunInference" in step for steps in bundles.values() for step in steps)
