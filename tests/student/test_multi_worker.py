"""The trainer across workers: `student/train.py --strategy multi_worker_mirrored`.

Two local worker processes (TF_CONFIG on free localhost ports) train the tiny student, at the
global batch of a one-worker run; the workers are `student/train.py` itself, instrumented by
multi_worker_check.py to record the example ids each step consumed and the step losses.
Proved here:
  * the losses of every step equal the one-worker run's (same global batch, data.input_streams=2);
  * each worker reads its own shard files (worker 0 the even-numbered examples of the fixtures,
    in shard 0; worker 1 the odd ones, in shard 1), the two workers' examples of a step are
    disjoint and together are exactly the one-worker step's batch, in order;
  * only the chief writes to model_dir (checkpoints, one summaries file, params.yaml,
    run_info.json, the export); the other worker's saves went to model_dir/workertemp_1, which
    is gone; each worker saved its own input position under model_dir/input_state;
  * a worker SIGKILLed at step 6 (checkpoint at 4), both restarted (on new ports): they resume
    from ckpt-4, step 5 uses the examples the uninterrupted run used at step 5 (input position),
    and steps 5-8 give the uninterrupted run's losses;
  * a malformed TF_CONFIG and a global batch the workers cannot share fail fast, named.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from student import config as config_lib
from student import distribution
from student import input_pipeline
from student import shard_sources
from tests.conftest import REPO_ROOT
from tests.student.conftest import TINY_CONFIG, make_shards

SCRIPT = REPO_ROOT / "tests" / "student" / "multi_worker_check.py"
NO_DROPOUT = ("model.encoder.bert_v2.dropout_rate=0.0,"
              "model.encoder.bert_v2.attention_dropout_rate=0.0")
TOLERANCE = 1e-5
# Seconds a group of worker processes may take: ~1 min on an idle 2-core machine; far more when
# the machine is shared (then processes are killed and the test fails, never hangs).
TIMEOUT = 900
STEPS = 8  # tiny.yaml: 8 steps, 2 a loop, a checkpoint every 4


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _tf_config(ports, index):
    return json.dumps({"cluster": {"worker": [f"localhost:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


class _Processes:
    """Worker processes started by a test; all killed at the end, whatever happens."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.running = {}

    def start(self, name, args, tf_config=None, kill_after_step=0):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
                   PYTHONPATH=str(REPO_ROOT), MW_RECORD=str(self.tmp_path / "record" / name))
        env.pop("TF_CONFIG", None)
        if tf_config:
            env["TF_CONFIG"] = tf_config
        if kill_after_step:
            env["MW_KILL_AFTER_STEP"] = str(kill_after_step)
        log = open(self.tmp_path / f"{name}.log", "w", encoding="utf-8")
        process = subprocess.Popen([sys.executable, str(SCRIPT), "--config_file", TINY_CONFIG,
                                    *args], cwd=REPO_ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
        self.running[name] = (process, log)
        return process

    def log(self, name):
        return (self.tmp_path / f"{name}.log").read_text(encoding="utf-8")

    def wait(self, name, deadline):
        process, log = self.running[name]
        try:
            code = process.wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            self.kill_all()
            pytest.fail(f"{name} still running after its time limit:\n{self.log(name)[-4000:]}")
        log.close()
        return code

    def expect_success(self, name, deadline):
        code = self.wait(name, deadline)
        if code != 0:
            self.kill_all()
            pytest.fail(f"{name} exited with {code}:\n{self.log(name)[-6000:]}")

    def kill(self, name):
        process, log = self.running[name]
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=60)
        log.close()

    def kill_all(self):
        for name in list(self.running):
            self.kill(name)


def _ids(record_dir):
    """step -> the example ids that worker's replicas consumed at that step."""
    steps = {}
    for line in (record_dir / "ids.tsv").read_text().splitlines():
        step, ids = line.split("\t")
        assert int(step) not in steps, f"step {step} recorded twice in {record_dir}"
        steps[int(step)] = ids.strip('"').split()
    return steps


def _losses(record_dir):
    """step -> loss, from the worker's per-loop records."""
    losses = {}
    for line in (record_dir / "losses.jsonl").read_text().splitlines():
        entry = json.loads(line)
        for i, loss in enumerate(entry["loss"]):
            losses[entry["first_step"] + i + 1] = loss
    return losses


def _wait_for_step(record_dir, step, deadline):
    path = record_dir / "losses.jsonl"
    while time.time() < deadline:
        if path.exists() and step in _losses(record_dir):
            return
        time.sleep(1)
    pytest.fail(f"{record_dir} never recorded step {step}")


def _close(a, b):
    return set(a) == set(b) and all(abs(a[s] - b[s]) <= TOLERANCE for s in a)


def _tree(folder):
    return sorted(os.path.relpath(os.path.join(root, name), folder)
                  for root, _, names in os.walk(folder) for name in names)


@pytest.mark.slow
def test_two_workers_match_one_worker_resume_after_a_kill(tmp_path, student_vocab):
    # Two shard files a language: stream g of 2 reads file g; example i is in file i % 2.
    en = make_shards(tmp_path / "en", student_vocab, {"en": 60}, seed=0)
    de = make_shards(tmp_path / "de", student_vocab, {"de": 30}, seed=1)

    def args(model_dir, *more):
        return ["--student_vocab", student_vocab, "--shards", f"en={en}", "--shards", f"de={de}",
                "--model_dir", str(tmp_path / model_dir),
                "--params_override", NO_DROPOUT, *more]

    workers = ["--strategy", "multi_worker_mirrored"]
    procs = _Processes(tmp_path)
    try:
        ports_a0, ports_a1, ports_b0, ports_b1 = _free_ports(4)
        deadline = time.time() + TIMEOUT
        # One worker, one device, the same global batch of 8 as two input streams of 4.
        procs.start("one", args("one", "--strategy", "one_device", "--noexport",
                                "--params_override", "data.input_streams=2"))
        # A: two workers, uninterrupted, exporting.
        for i in (0, 1):
            procs.start(f"a{i}", args("a", *workers), _tf_config([ports_a0, ports_a1], i))
        # B: two workers; worker 1 dies (SIGKILL) right after step 6.
        for i in (0, 1):
            procs.start(f"b{i}", args("b", *workers, "--noexport"),
                        _tf_config([ports_b0, ports_b1], i), kill_after_step=6 if i else 0)
        # Fails fast: a malformed TF_CONFIG.
        procs.start("bad", args("bad", *workers), tf_config='{"cluster": {"worker": "x"}}')

        assert procs.wait("b1", deadline) == -signal.SIGKILL, procs.log("b1")[-4000:]
        # The chief finished step 6 with it and now waits for a worker that is gone: kill it
        # too (once it has recorded step 6), restart both (new ports).
        _wait_for_step(record_dir=tmp_path / "record" / "b0", step=6, deadline=deadline)
        procs.kill("b0")
        run_b = tmp_path / "b"
        assert tf.train.latest_checkpoint(str(run_b)).endswith("ckpt-4")
        assert not (run_b / "ckpt-8.index").exists()
        ports_c = _free_ports(2)
        deadline_c = time.time() + TIMEOUT
        for i in (0, 1):
            procs.start(f"c{i}", args("b", *workers, "--noexport"), _tf_config(ports_c, i))

        assert procs.wait("bad", deadline) == 1
        assert ("error: ConfigError: TF_CONFIG: field 'cluster.worker' = 'x': must be a "
                "non-empty list of 'host:port' strings") in procs.log("bad")
        assert not (tmp_path / "bad").exists()
        for name in ("one", "a0", "a1"):
            procs.expect_success(name, deadline)
        for name in ("c0", "c1"):
            procs.expect_success(name, deadline_c)
    finally:
        procs.kill_all()
    record = tmp_path / "record"

    # Losses: two workers = one worker, at every step (both workers see the global loss).
    one = _losses(record / "one")
    assert sorted(one) == list(range(1, STEPS + 1))
    for name in ("a0", "a1"):
        assert _close(_losses(record / name), one), (name, _losses(record / name), one)

    # Batches: each worker its own shard (even / odd examples), disjoint, union = one's batch.
    one_ids, a0_ids, a1_ids = (_ids(record / name) for name in ("one", "a0", "a1"))
    assert sorted(one_ids) == sorted(a0_ids) == sorted(a1_ids) == list(range(1, STEPS + 1))
    for step in one_ids:
        first, second = a0_ids[step], a1_ids[step]
        assert len(first) == len(second) == 4
        assert all(int(i.split("-")[1]) % 2 == 0 for i in first), (step, first)
        assert all(int(i.split("-")[1]) % 2 == 1 for i in second), (step, second)
        assert not set(first) & set(second)
        assert first + second == one_ids[step], (step, first, second, one_ids[step])

    # Only the chief wrote to model_dir; the other worker's saves went to its temporary folder.
    run_a = tmp_path / "a"
    files = _tree(run_a)
    assert not [f for f in files if "workertemp" in f], files
    assert {f for f in files if "/" not in f} == {
        "checkpoint", "ckpt-4.index", "ckpt-4.data-00000-of-00001", "ckpt-8.index",
        "ckpt-8.data-00000-of-00001", "params.yaml", "run_info.json"}, files
    assert len([f for f in files if f.startswith("summaries/")]) == 1, files
    assert {f.split("/")[0] for f in files if "/" in f} == {"summaries", "export", "input_state"}
    assert {os.path.dirname(f) for f in files if f.startswith("input_state/")} == {
        "input_state/worker-0-of-2", "input_state/worker-1-of-2"}
    assert "export/saved_model/saved_model.pb" in files
    assert json.loads((run_a / "run_info.json").read_text())["workers"] == 2
    non_chief = json.loads((record / "a1" / "temp.json").read_text())
    assert {"ckpt-4.index", "ckpt-8.index", "export/saved_model/saved_model.pb"} <= set(non_chief)
    assert not (record / "a0" / "temp.json").exists()
    assert "(not the chief: temporary, deleted)" in procs.log("a1")

    # The killed run ran steps 1-6 like A; the restarted one resumed at ckpt-4 (step and input
    # position) and finished with A's losses and batches.
    a_losses = _losses(record / "a0")
    b_losses = _losses(record / "b0")
    assert sorted(b_losses) == list(range(1, 7))
    assert _close(b_losses, {s: a_losses[s] for s in range(1, 7)})
    for i in (0, 1):
        assert "ckpt-4 (step 4)" in procs.log(f"c{i}")
        assert "input_state/worker-%d-of-2/ckpt-4" % i in procs.log(f"c{i}")
        c_ids = _ids(record / f"c{i}")
        assert sorted(c_ids) == list(range(5, STEPS + 1))
        a_ids = a0_ids if i == 0 else a1_ids
        assert c_ids == {s: a_ids[s] for s in range(5, STEPS + 1)}
        c_losses = _losses(record / f"c{i}")
        assert _close(c_losses, {s: a_losses[s] for s in range(5, STEPS + 1)}), c_losses
    assert tf.train.latest_checkpoint(str(run_b)).endswith("ckpt-8")


def _cluster_config(**data):
    return config_lib.load_config(TINY_CONFIG, [
        {"runtime": {"distribution_strategy": "multi_worker_mirrored"}, "data": data}])


def _env(workers=2, index=0, **extra):
    value = {"cluster": {"worker": [f"localhost:{2222 + i}" for i in range(workers)]},
             "task": {"type": "worker", "index": index}}
    value.update(extra)
    return {"TF_CONFIG": json.dumps(value)}


def test_tf_config_parsed_chief_first():
    cluster = distribution.parse_tf_config(json.dumps({
        "cluster": {"chief": ["h0:1"], "worker": ["h1:1", "h2:1"]},
        "task": {"type": "worker", "index": 1}}))
    assert cluster.workers == ("h0:1", "h1:1", "h2:1") and cluster.index == 2
    assert distribution.check_cluster(_cluster_config(), _env(2, 1)).index == 1
    assert distribution.check_cluster(config_lib.load_config(TINY_CONFIG), {}) is None


@pytest.mark.parametrize("environ, message", [
    ({}, "TF_CONFIG: not set"),
    ({"TF_CONFIG": "{cluster"}, "TF_CONFIG: not valid JSON"),
    ({"TF_CONFIG": "[1]"}, "TF_CONFIG: must be a JSON object"),
    ({"TF_CONFIG": '{"task": {"type": "worker", "index": 0}}'}, "field 'cluster' = None"),
    ({"TF_CONFIG": '{"cluster": {"ps": ["h:1"]}, "task": {}}'},
     "field 'cluster' has job(s) ['ps']"),
    ({"TF_CONFIG": '{"cluster": {"worker": ["h"]}, "task": {"type": "worker", "index": 0}}'},
     "field 'cluster.worker' = ['h']: must be a non-empty list of 'host:port'"),
    ({"TF_CONFIG": '{"cluster": {"worker": ["h:1", "h:1"]}, "task": {"type": "worker", '
                   '"index": 0}}'}, "lists an address twice"),
    ({"TF_CONFIG": '{"cluster": {"worker": ["h:1"]}}'}, "field 'task' = None"),
    (_env(task={"type": "chief", "index": 0}), "field 'task.type' = 'chief'"),
    (_env(task={"type": "worker", "index": 2}), "field 'task.index' = 2: must be an int in [0, 2)"),
    (_env(task={"type": "worker", "index": "0"}), "field 'task.index' = '0'"),
])
def test_malformed_tf_config_refused(environ, message):
    with pytest.raises(config_lib.ConfigError) as error:
        distribution.check_cluster(_cluster_config(), environ)
    assert message in str(error.value)


def test_batch_and_streams_must_split_over_the_workers():
    with pytest.raises(config_lib.ConfigError,
                       match=r"field 'data.global_batch_size' = 8: must be a multiple of the 3 "
                             r"workers of TF_CONFIG"):
        distribution.check_cluster(_cluster_config(), _env(3))
    with pytest.raises(config_lib.ConfigError,
                       match=r"field 'data.input_streams' = 2: must be a multiple of the 4 "
                             r"workers"):
        distribution.check_cluster(_cluster_config(input_streams=2), _env(4))
    with pytest.raises(config_lib.ConfigError,
                       match=r"field 'data.input_streams' = 3: must divide "
                             r"data.global_batch_size = 8"):
        _cluster_config(input_streams=3)
    with pytest.raises(config_lib.ConfigError, match=r"field 'data.input_streams' = -1"):
        _cluster_config(input_streams=-1)


def _pipeline(shards, vocab, **data):
    config = config_lib.load_config(TINY_CONFIG, [{"data": data}] if data else [])
    vocab_info = shard_sources.read_student_vocab(vocab, config)
    sources = shard_sources.open_sources(shards, config.data, vocab_info, use_teacher=True)
    return input_pipeline.StudentInputPipeline(sources, config.data, use_teacher=True,
                                               example_ids=True)


def _batch_ids(dataset, n):
    return [[i.decode() for i in b["example_id"].numpy()] for b in dataset.take(n)]


def test_worker_streams_compose_the_global_batch(tmp_path, student_vocab, scored_shards):
    # One stream is the single-worker pipeline itself.
    single = _pipeline(scored_shards, student_vocab)
    assert _batch_ids(single.worker_dataset(1, 0), 4) == _batch_ids(single.dataset(), 4)
    # N = 4 streams: one worker holds all, 2 workers 2 each, 4 workers 1 each: same batches.
    shards = {"en": make_shards(tmp_path / "en", student_vocab, {"en": 80},
                                shards_per_language=4),
              "de": make_shards(tmp_path / "de", student_vocab, {"de": 40},
                                shards_per_language=4, seed=1)}
    pipeline = _pipeline(shards, student_vocab, input_streams=4)
    whole = _batch_ids(pipeline.worker_dataset(1, 0), 3)
    for workers in (2, 4):
        parts = [_batch_ids(pipeline.worker_dataset(workers, w), 3) for w in range(workers)]
        assert [sum((p[b] for p in parts), []) for b in range(3)] == whole
        for w, part in enumerate(parts):
            # Worker w reads streams [w N/W, (w+1) N/W): example i is in file i % 4.
            own = set(range(w * 4 // workers, (w + 1) * 4 // workers))
            assert all(int(i.split("-")[1]) % 4 in own for batch in part for i in batch)
    for batch in whole:
        assert len(batch) == len(set(batch)) == 8
    with pytest.raises(config_lib.ConfigError, match="field 'data.input_streams' = 4"):
        pipeline.worker_dataset(3, 0)
    with pytest.raises(shard_sources.ShardError,
                       match="fewer than the 4 input streams"):
        _pipeline(scored_shards, student_vocab, input_streams=4).worker_dataset(1, 0)
