"""The scoring job on runners other than the DirectRunner, against a DirectRunner run of the same
config (tests/beam_jobs/conftest: two English teachers in `best` mode, one German teacher):

* Beam's portable protocol (what Dataflow Runner v2 speaks): `PortableRunner` with the embedded
  job service, and the SDK harness in separate processes started by a worker pool
  (`--environment_type=EXTERNAL`, `apache_beam.runners.worker.worker_pool_main`): every DoFn,
  coder and side input crosses a process boundary through the Fn API;
* Dask (`--runner DaskRunner`, `beam_jobs.dask_runner`) on a `distributed.LocalCluster` of 2
  worker processes, addressed with `--dask_client_address`.

Both must write byte-identical shards and the same manifests (counters included).

Canonical batches (`canonical_batches`, on by default): the tiny teachers give the same bytes
with the option off; a hidden-128 teacher at S 128 (shaped as bench/bench_runners.py's, whose
Dask run gave 7 of 576 records 1 ulp apart without the option) gives the same bytes on the
DirectRunner and on Dask with `--dask_npartitions=4` with it (docs/scoring_job.md, "Bytes differ
when the batches differ")."""

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


def test_canonical_batches_off_gives_the_same_bytes_for_the_tiny_teachers(workspace, direct_run,
                                                                          tmp_path):
    """The tiny teachers' rows do not depend on their batch: RunInference's own batching
    (`canonical_batches: false`) writes the bytes the canonical batches wrote."""
    out = tmp_path / "off"
    config = job_config.from_dict(workspace.config(out, canonical_batches=False),
                                  source="test-config")
    assert job_config.from_dict(workspace.config(out), source="x").canonical_batches
    result = pipeline.run_job(config, ["--runner=DirectRunner", "--direct_running_mode=in_memory"])
    assert result.dead_letters == 0
    reference, other = _shard_bytes(direct_run), _shard_bytes(out)
    assert sorted(reference) == sorted(other) and reference == other
    for language, manifest in _manifests(direct_run).items():
        theirs = _manifests(out)[language]
        assert theirs.languages == manifest.languages, language
        assert theirs.dropped == manifest.dropped, language
        assert manifest.config["canonical_batches"] is True
        assert theirs.config["canonical_batches"] is False
        # Only the batching differs: RunInference's batches here, the canonical ones there.
        differ = {k for k in manifest.counters if theirs.counters.get(k) != manifest.counters[k]}
        assert differ <= {k for k in manifest.counters if k.startswith("job/")}, differ


# The teacher of bench/bench_runners.py (a random BERT of 2 layers, hidden 128, 2 heads,
# intermediate 512, initializer_range 0.5; S 128, P 20, k 8, batches of 64) over the shipped
# English teacher's vocabulary (fixed: a WordPiece vocabulary trained here differs from process
# to process), on the first 200 KB of the English demo text in BERT's format (8 paragraphs a
# document). Without canonical batches its Dask run (--dask_npartitions=4) differs from the
# DirectRunner's in the last bit of a few records (docs/scoring_job.md, "Canonical batches");
# the shipped teachers (S <= 64) did not show it.
H128_CORPUS_BYTES = 200_000
H128_SEQ, H128_PREDICTIONS = 128, 20


def make_h128_workspace(root: pathlib.Path) -> dict:
    """Corpus, teacher and student vocab of the hidden-128 check; returns a job config dict
    (output_dir to be set)."""
    import tensorflow as tf

    from teacher_scoring.teachers import export
    from teacher_scoring.teachers.loaders import bert_mlm, load_teacher
    from tests.conftest import REPO_ROOT, demo_lines
    from vocab.union import StudentVocab

    lines, size = [], 0
    for line in demo_lines("en"):
        if size >= H128_CORPUS_BYTES:
            break
        lines.append(line)
        size += len(line.encode("utf-8")) + 1
    documents = ["\n".join(lines[i:i + 8]) for i in range(0, len(lines), 8)]
    corpus = root / "en.txt"
    corpus.parent.mkdir(parents=True, exist_ok=True)
    corpus.write_text("\n\n".join(documents) + "\n", encoding="utf-8")
    shipped = load_teacher(str(REPO_ROOT / "data" / "teachers" / "en"), format="hf_folder")
    vocab = list(shipped.vocab)
    tf.keras.utils.set_random_seed(0)
    model = bert_mlm.build_bert_mlm(bert_mlm.BertMLMConfig(
        vocab_size=len(vocab), hidden_size=128, num_layers=2, num_attention_heads=2,
        intermediate_size=512, max_position_embeddings=H128_SEQ, initializer_range=0.5))
    teacher = root / "teachers" / "h128"
    export.export_hf_folder(model.encoder_network, model.masked_lm, vocab, str(teacher),
                            lower_case=shipped.lower_case, languages=["en"], name="h128")
    StudentVocab.build({"h128": vocab}).save(str(root / "vocab"))
    return {
        "student_vocab": str(root / "vocab"), "output_dir": "unset",
        "seq_length": H128_SEQ, "max_predictions_per_seq": H128_PREDICTIONS, "top_k": 8,
        "masked_lm_prob": 0.15, "whole_word_masking": True, "seed": 12345,
        "logits_dtype": "float32", "compression": "GZIP", "copies_mode": "best",
        "inference_batch_size": 64, "document_format": "blank_line",
        "languages": {"en": {"corpus": [str(corpus)], "num_shards": 2}},
        "teachers": {"h128": {"format": "hf_folder", "path": str(teacher),
                              "languages": ["en"]}},
    }


def test_canonical_batches_give_the_same_bytes_on_dask_for_a_hidden_128_teacher(
        tmp_path, dask_cluster, monkeypatch):
    from beam_jobs import dask_runner

    cluster, client = dask_cluster
    monkeypatch.setattr(pipeline._wait, "__defaults__", (1.0,))
    data = make_h128_workspace(tmp_path / "ws")
    assert "canonical_batches" not in data           # the default: on
    runs = {}
    for runner, args in (("direct", ["--runner=DirectRunner",
                                      "--direct_running_mode=in_memory"]),
                         ("dask", ["--runner=DaskRunner",
                                   f"--dask_client_address={cluster.scheduler_address}",
                                   "--dask_npartitions=4"])):
        out = tmp_path / runner
        config = job_config.from_dict({**data, "output_dir": str(out)}, source="h128-config")
        runs[runner] = pipeline.run_job(config, args)
        assert runs[runner].dead_letters == 0
    direct, dask = _shard_bytes(tmp_path / "direct"), _shard_bytes(tmp_path / "dask")
    assert sorted(direct) == sorted(dask) == ["en/en-00000-of-00002.tfrecord.gz",
                                              "en/en-00001-of-00002.tfrecord.gz"]
    for name, data_bytes in direct.items():
        assert dask[name] == data_bytes, f"{name}: Dask wrote different bytes"
    manifests = {runner: manifest_lib.read_manifest(str(tmp_path / runner / "en"))
                 for runner in runs}
    assert manifests["direct"].languages == manifests["dask"].languages
    # The batches too are the same: counted by the data, not by the bundles.
    assert manifests["direct"].counters == manifests["dask"].counters
    assert manifests["direct"].languages["en"].examples >= 300
    # Dask did cut the work differently: the corpus was read in several bundles (4; Dask may
    # run a partition's task more than once), on both workers.
    bundles = client.run(dask_runner.bundles_run)
    assert len(bundles) == 2, bundles
    assert all(steps.get("ReadCorpus[en]/CountLines", 0) > 0 for steps in bundles.values())
    assert sum(steps["ReadCorpus[en]/CountLines"] for steps in bundles.values()) >= 4, bundles
