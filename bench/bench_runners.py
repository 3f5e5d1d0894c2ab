r"""Benchmark: the scoring job on three runners side by side, on the same corpus and config.

  * direct:   DirectRunner, `in_memory` (the launcher's default), one process;
  * portable: PortableRunner with the embedded job service (Dataflow Runner v2 speaks the same
              Fn API) and the SDK harness in separate processes (`--environment_type=EXTERNAL`,
              a worker pool started by this script: `apache_beam.runners.worker.worker_pool_main`);
  * dask:     `--runner DaskRunner` (beam_jobs/dask_runner.py) on a `distributed.LocalCluster`
              of `--dask_workers` worker processes (one thread each), started by this script
              and given to the job with `--dask_client_address`.

Each run is the launcher (`python -m beam_jobs.score_corpora`) in its own process: teacher
validation, the pipeline, manifests. Reported per runner: sequences (records written) per
second of the launcher's wall clock, and CPU-seconds (user + system) per 1,000 sequences of
**every process involved**: this script samples the CPU times of all its descendant processes
(launcher, worker pool and SDK harnesses, Dask scheduler, nannies and workers) every 0.1 s
and adds up each process's last sample (a process's last < 0.1 s is not seen; start-up of the
pool / cluster is included, since a job pays it too). The shards of every runner are compared
with the DirectRunner's, byte for byte.

The corpus: the bundled demo text of `--languages` in BERT's format (`blank_line`, a document =
`--paragraphs_per_document` consecutive paragraphs), one random BERT teacher
(`--num_layers`, `--hidden_size`) for all of them, S 128, P 20, k 8, `best` copies, GZIP.

    .venv/bin/python bench/bench_runners.py                     # de en es it, 2-layer teacher
    .venv/bin/python bench/bench_runners.py --runners=direct,dask --dask_workers=4
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from absl import app, flags

FLAGS = flags.FLAGS
REPO = pathlib.Path(__file__).resolve().parents[1]

flags.DEFINE_string("work_dir", None, "Scratch folder (default: a new temporary folder).")
flags.DEFINE_bool("keep", False, "Keep the scratch folder.")
flags.DEFINE_list("languages", ["de", "en", "es", "it"], "Demo corpora to score.")
flags.DEFINE_list("runners", ["direct", "portable", "dask"], "Runners to measure, in order.")
flags.DEFINE_integer("paragraphs_per_document", 8, "Demo paragraphs a document (blank_line).")
flags.DEFINE_integer("vocab_size", 8000, "Teacher WordPiece vocab size.")
flags.DEFINE_integer("num_layers", 2, "Teacher layers.")
flags.DEFINE_integer("hidden_size", 128, "Teacher hidden size (heads = hidden / 64).")
flags.DEFINE_integer("batch_size", 64, "Inference batch size.")
flags.DEFINE_integer("num_shards", 2, "Shards per language.")
flags.DEFINE_integer("dask_workers", 2, "Dask worker processes (one thread each).")
flags.DEFINE_integer("dask_npartitions", None, "--dask_npartitions for the job (default: the "
                     "runner's).")

S, P, K = 128, 20, 8


def build_workspace(root: pathlib.Path) -> pathlib.Path:
    """Corpora, teacher, student vocab, job config; returns the config path."""
    import tensorflow as tf
    import yaml

    from teacher_scoring.teachers import export
    from teacher_scoring.teachers.loaders import bert_mlm
    from vocab.train_wordpiece import train_wordpiece
    from vocab.union import StudentVocab

    corpora, all_lines = {}, []
    for language in FLAGS.languages:
        lines = [line for line in (REPO / "data/corpora/demo" / f"{language}.txt").read_text(
            encoding="utf-8").split("\n") if line.strip()]
        all_lines += lines
        k = FLAGS.paragraphs_per_document
        documents = ["\n".join(lines[i:i + k]) for i in range(0, len(lines), k)]
        path = root / "corpora" / f"{language}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n\n".join(documents) + "\n", encoding="utf-8")
        corpora[language] = path
    vocab = train_wordpiece(all_lines, FLAGS.vocab_size, lower_case=False)
    tf.keras.utils.set_random_seed(0)
    model = bert_mlm.build_bert_mlm(bert_mlm.BertMLMConfig(
        vocab_size=len(vocab), hidden_size=FLAGS.hidden_size, num_layers=FLAGS.num_layers,
        num_attention_heads=max(1, FLAGS.hidden_size // 64),
        intermediate_size=4 * FLAGS.hidden_size, max_position_embeddings=S,
        initializer_range=0.5))
    teacher = root / "teachers" / "bench"
    export.export_hf_folder(model.encoder_network, model.masked_lm, vocab, str(teacher),
                            lower_case=False, languages=list(FLAGS.languages), name="bench")
    StudentVocab.build({"bench": vocab}).save(str(root / "vocab"))
    config = {
        "student_vocab": str(root / "vocab"), "output_dir": str(root / "unused"),
        "seq_length": S, "max_predictions_per_seq": P, "top_k": K, "masked_lm_prob": 0.15,
        "whole_word_masking": True, "seed": 12345, "logits_dtype": "float32",
        "compression": "GZIP", "copies_mode": "best", "inference_batch_size": FLAGS.batch_size,
        "document_format": "blank_line",
        "languages": {lang: {"corpus": [str(p)], "num_shards": FLAGS.num_shards}
                      for lang, p in corpora.items()},
        "teachers": {"bench": {"format": "hf_folder", "path": str(teacher),
                               "languages": list(corpora)}},
    }
    path = root / "job.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class TreeCpu:
    """CPU seconds (user + system) of every descendant process of this one, sampled."""

    def __init__(self, interval: float = 0.1):
        import psutil
        self._psutil = psutil
        self._me = psutil.Process()
        self._interval = interval
        self._last: dict[tuple[int, float], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self):
        for process in self._me.children(recursive=True):
            try:
                with process.oneshot():
                    key = (process.pid, process.create_time())
                    times = process.cpu_times()
                self._last[key] = times.user + times.system
            except (self._psutil.NoSuchProcess, self._psutil.AccessDenied,
                    self._psutil.ZombieProcess):
                continue

    def _loop(self):
        while not self._stop.wait(self._interval):
            self._sample()

    def __enter__(self):
        self._sample()
        self._base = dict(self._last)   # processes already running: count from now
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._sample()
        self._stop.set()
        self._thread.join()
        self.seconds = sum(v - self._base.get(k, 0.0) for k, v in self._last.items())
        self.processes = len(self._last)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("localhost", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("CUDA_VISIBLE_DEVICES", "")
    return env


DASK_CLUSTER = """
import sys
from dask import distributed
cluster = distributed.LocalCluster(n_workers=int(sys.argv[1]), threads_per_worker=1,
                                   processes=True, dashboard_address=None, memory_limit=None)
client = distributed.Client(cluster)
client.wait_for_workers(int(sys.argv[1]))
client.close()
print(cluster.scheduler_address, flush=True)
sys.stdin.read()          # runs until the benchmark closes stdin
cluster.close()
"""


def start_service(runner: str, log):
    """(extra pipeline args, the service process or None) for `runner`."""
    if runner == "direct":
        return ["--runner=DirectRunner", "--direct_running_mode=in_memory"], None
    if runner == "portable":
        port = _free_port()
        pool = subprocess.Popen([sys.executable, "-m",
                                 "apache_beam.runners.worker.worker_pool_main",
                                 f"--service_port={port}"], env=_env(), stdout=log,
                                stderr=log)
        _wait_for_port(port)
        return ["--runner=PortableRunner", "--job_endpoint=embed",
                "--environment_type=EXTERNAL", f"--environment_config=localhost:{port}"], pool
    if runner == "dask":
        cluster = subprocess.Popen([sys.executable, "-c", DASK_CLUSTER,
                                    str(FLAGS.dask_workers)], env=_env(), stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=log, text=True)
        address = cluster.stdout.readline().strip()
        if not address:
            raise RuntimeError("the Dask cluster did not start (see the log)")
        args = ["--runner=DaskRunner", f"--dask_client_address={address}"]
        if FLAGS.dask_npartitions:
            args.append(f"--dask_npartitions={FLAGS.dask_npartitions}")
        return args, cluster
    raise ValueError(f"--runners: unknown runner {runner!r} (direct, portable, dask)")


def stop_service(service) -> None:
    if service is None:
        return
    if service.stdin is not None:
        service.stdin.close()             # the Dask helper closes its cluster
    else:
        service.send_signal(signal.SIGINT)   # the worker pool stops its harnesses
    try:
        service.wait(timeout=60)
    except subprocess.TimeoutExpired:
        service.kill()
        service.wait()


def shard_bytes(output_dir: pathlib.Path) -> dict[str, bytes]:
    return {f"{p.parent.name}/{p.name}": p.read_bytes()
            for p in sorted(output_dir.glob("*/*.tfrecord*"))}


def run(runner: str, config: pathlib.Path, root: pathlib.Path) -> dict:
    out = root / f"scored_{runner}"
    log_path = root / f"{runner}.log"
    with open(log_path, "w") as log, TreeCpu() as cpu:
        args, service = start_service(runner, log)
        try:
            command = [sys.executable, "-m", "beam_jobs.score_corpora", f"--config={config}",
                       f"--output_dir={out}"] + args
            start = time.monotonic()
            done = subprocess.run(command, cwd=root, env=_env(), stdout=subprocess.PIPE,
                                  stderr=log, text=True)
            wall = time.monotonic() - start
        finally:
            stop_service(service)
    if done.returncode != 0:
        raise RuntimeError(f"{runner}: the job failed ({done.returncode}); see {log_path}")
    sequences = 0
    for language in FLAGS.languages:
        manifest = json.loads((out / language / "manifest.json").read_text())
        sequences += manifest["languages"][language]["examples"]
    return {"runner": runner, "wall_s": wall, "cpu_s": cpu.seconds, "processes": cpu.processes,
            "sequences": sequences, "out": out}


def main(argv):
    del argv
    root = pathlib.Path(FLAGS.work_dir or tempfile.mkdtemp(prefix="bench_runners_"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        config = build_workspace(root)
        results = []
        for runner in FLAGS.runners:
            result = run(runner, config, root)
            results.append(result)
            print(f"{runner}: {result['sequences']} sequences in {result['wall_s']:.1f} s wall, "
                  f"{result['cpu_s']:.1f} CPU-s over {result['processes']} processes",
                  flush=True)
        reference = shard_bytes(results[0]["out"])
        print(f"\nload average at the end: {os.getloadavg()}; {os.cpu_count()} CPUs")
        print(f"| runner | sequences | wall s | sequences/s | CPU-s | CPU-s per 1,000 sequences "
              f"| processes | shards = {results[0]['runner']}'s |")
        print("|---|---|---|---|---|---|---|---|")
        for r in results:
            same = shard_bytes(r["out"]) == reference and bool(reference)
            print(f"| {r['runner']} | {r['sequences']} | {r['wall_s']:.1f} | "
                  f"{r['sequences'] / r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                  f"{1000 * r['cpu_s'] / r['sequences']:.1f} | {r['processes']} | "
                  f"{'yes' if same else 'NO'} |")
    finally:
        if not FLAGS.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")


if __name__ == "__main__":
    app.run(main)
