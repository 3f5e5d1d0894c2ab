"""CPU accounting of a benchmark process: CPU time of the process and of its threads, CPU
time inside named functions of the scoring job (`CpuSections`), and a digest of the shards a
job wrote. bench/bench_scoring.py uses it; tests/bench/test_cpu_accounting.py tests it (a module
without absl flags, so tests can import it beside other flag-defining modules)."""

from __future__ import annotations

import os
import pathlib
import resource
import time


def cpu_seconds() -> float:
    """CPU time (user + system, all threads) of this process and its finished children (the
    DirectRunner's multi-processing workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def thread_cpu_seconds() -> dict[int, tuple[str, float]]:
    """tid → (thread name, CPU seconds) of this process's live threads (/proc, Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    threads = {}
    for task in pathlib.Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue   # the thread ended
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        threads[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return threads


def thread_groups(before: dict, after: dict) -> dict[str, float]:
    """CPU seconds between two `thread_cpu_seconds` snapshots: the main thread's, and the other
    threads' by name (digits dropped: a pool's threads together; TensorFlow's pools keep the
    process's name); threads that ended in between are not counted."""
    groups: dict[str, float] = {}
    for tid, (name, cpu) in after.items():
        key = "".join(c for c in name if not c.isdigit()).rstrip("_-") or name
        key = "main thread" if tid == os.getpid() else f"other threads named {key!r}"
        groups[key] = groups.get(key, 0.0) + cpu - before.get(tid, (name, 0.0))[1]
    return dict(sorted(groups.items(), key=lambda kv: -kv[1]))


class CpuSections:
    """CPU seconds (this process, all threads) spent inside named functions of the job while
    active, each section's own (a section called inside another is counted in the inner one
    only): with the in_memory runner the job's steps run one at a time in this thread, so a
    section's CPU is its own work, that of TensorFlow's threads it waits for included. The
    teachers' scoring functions are timed too: their first call (the launcher check's test
    batch: XLA compilation and one [B, S] batch) apart from the others. What no section covers
    is Beam's (runner start-up, fusion, element coding, DoFn invocation) and the rest of the
    launcher."""

    FIRST_CALL = "scoring: trace + XLA compile + the check's [B, S] test batch"
    CALLS = "scoring: the job's batches (real + padded rows)"
    SECTIONS = (
        # (name, module, attribute path, is a generator function)
        ("teacher load and build", "beam_jobs.loaded_teachers", "teacher", False),
        ("launcher: student vocab load", "vocab.union", "StudentVocab.load", False),
        ("launcher: other checks", "beam_jobs.pipeline", "prepare_job", False),
        ("pipeline construction", "beam_jobs.pipeline", "build_pipeline", False),
        ("tokenizer build", "beam_jobs.build_examples", "shared_tokenizer", False),
        ("tokenize, segment, mask (tokenizer trace included)", "beam_jobs.build_examples",
         "_BuildFn._build", False),
        ("canonical batches: sort and cut", "beam_jobs.score", "_CutBatchesFn.process", True),
        ("batch assembly and unpacking", "beam_jobs.teacher_model_handler",
         "TeacherModelHandler._score", False),
        ("copy checks before scoring", "beam_jobs.teacher_model_handler",
         "TeacherModelHandler._check", False),
        ("score checks (finite, float16 range)", "beam_jobs.teacher_model_handler",
         "unwritable_scores", False),
        ("attach scores", "beam_jobs.score", "_AttachScoresFn.process", True),
        ("vocab mapping", "beam_jobs.vocab_mapping", "map_to_student", False),
        ("tf.train.Example serialization", "teacher_scoring.records.record_schema", "serialize",
         False),
        ("shards: sort, GZIP, write", "beam_jobs.write_shards", "_WriteShardFn.process", True),
        ("manifests and move into place", "beam_jobs.pipeline", "build_manifests", False),
        ("manifests and move into place", "teacher_scoring.records.manifest", "write_manifest",
         False),
        ("manifests and move into place", "beam_jobs.output", "move_into_place", False),
    )

    def __enter__(self):
        import importlib
        self.cpu: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._stack: list[float] = []    # CPU of the inner sections of each open section
        self._patched = []
        for name, module_name, attribute, generator in self.SECTIONS:
            owner = importlib.import_module(module_name)
            *path, leaf = attribute.split(".")
            for part in path:
                owner = getattr(owner, part)
            original = owner.__dict__[leaf]
            wrapped = original.__func__ if isinstance(original, (classmethod, staticmethod)) \
                else original
            replacement = self._wrap(name, wrapped, generator)
            if isinstance(original, classmethod):
                replacement = classmethod(replacement)
            setattr(owner, leaf, replacement)
            self._patched.append((owner, leaf, original))
        from teacher_scoring.teachers import scoring
        make_score_fn = scoring.make_score_fn
        sections = self

        def timed_make_score_fn(*args, **kwargs):
            score_fn = make_score_fn(*args, **kwargs)
            first = [True]

            def timed_score_fn(batch):
                name = sections.FIRST_CALL if first[0] else sections.CALLS
                first[0] = False
                return sections._timed(name, lambda: score_fn(batch))
            return timed_score_fn

        scoring.make_score_fn = timed_make_score_fn
        self._patched.append((scoring, "make_score_fn", make_score_fn))
        return self

    def _timed(self, name, call):
        self._stack.append(0.0)
        start = time.process_time()
        try:
            return call()
        finally:
            elapsed = time.process_time() - start
            inner = self._stack.pop()
            self.cpu[name] = self.cpu.get(name, 0.0) + elapsed - inner
            self.calls[name] = self.calls.get(name, 0) + 1
            if self._stack:
                self._stack[-1] += elapsed

    def _wrap(self, name, function, generator):
        import functools

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            if generator:
                return iter(self._timed(name, lambda: list(function(*args, **kwargs))))
            return self._timed(name, lambda: function(*args, **kwargs))
        return wrapper

    def __exit__(self, *exc):
        for owner, leaf, original in reversed(self._patched):
            setattr(owner, leaf, original)

    def table(self, total: float) -> str:
        rows = [f"    {name}: {cpu:.1f} ({self.calls[name]} calls)"
                for name, cpu in sorted(self.cpu.items(), key=lambda kv: -kv[1])]
        rows.append(f"    not in a section (Beam: start-up, fusion, element coding, DoFn "
                    f"invocation; the launcher's rest): {total - sum(self.cpu.values()):.1f}")
        return "\n".join(rows)


def shard_digest(output_dir: pathlib.Path) -> str:
    """One digest of every shard the job wrote (the sha256 of the shards' sha256s, in name
    order): equal digests = byte-identical shards."""
    import hashlib
    total = hashlib.sha256()
    for path in sorted(output_dir.glob("*/*.tfrecord*")):
        total.update(hashlib.sha256(path.read_bytes()).hexdigest().encode())
    return total.hexdigest()
