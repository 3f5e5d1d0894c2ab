"""The scoring job: validation before launch, the pipeline, and the manifests after it.

    ReadCorpus[lang] → BuildMaskedExamples[lang] → ScoreWithTeachers → MapToStudentVocab
        → SelectBestCopy → WriteShards            (+ WriteDeadLetters from every step)

A gold-only language (job config `tokenizer_teacher`) skips ScoreWithTeachers: its copies go
from BuildMaskedExamples straight to MapToStudentVocab and are written without teacher fields;
its manifest says `has_teacher_outputs: false` and names its tokenizer teacher.

`run_job(config, pipeline_args)` is the whole job (the launcher `beam_jobs.score_corpora` only
parses flags):

  1. `prepare_job`: every check that can fail without data, before the pipeline is built —
     corpus globs match files, the student vocab folder loads, every teacher loads
     (`load_teacher`), is in the student vocab with the very vocabulary it was built from,
     accepts S tokens, and scores a dummy batch to finite values (with the workers' scoring
     function at their batch shape); the output folder holds no previous run (unless
     overwrite). A bad teacher fails here, naming the teacher and the problem, before any
     document is read. The teachers and their scoring functions stay in the process
     (`beam_jobs.loaded_teachers`) until the job ends: workers in it (in_memory) reuse them.
  2. the stale temporary folders of killed runs are removed (`output.remove_stale_temp_dirs`),
     then the pipeline runs, writing into a new temporary folder under output_dir;
  3. the manifests are written from the shard index (counts of what is on disk) and the job's
     Beam counters (`dropped`, `counters`), and the files are moved into place.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Mapping, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions

from beam_jobs import dead_letter as dl
from beam_jobs import loaded_teachers, metrics, output
from beam_jobs.best_copy import SelectBestCopy
from beam_jobs.build_examples import DROP_REASONS as EXAMPLE_DROP_REASONS
from beam_jobs.build_examples import NO_MASKED_TOKEN, BuildMaskedExamples, TeacherSpec
from beam_jobs.job_config import JobConfig, resolve_path
from beam_jobs.read_corpus import ReadCorpus, check_corpus
from beam_jobs.score import SCORED, ScoreWithTeachers
from beam_jobs.teacher_model_handler import DROP_REASONS as SCORING_DROP_REASONS
from beam_jobs.teacher_model_handler import TeacherModelHandler, unwritable_scores
from beam_jobs.vocab_mapping import DROP_REASONS as MAPPING_DROP_REASONS
from beam_jobs.vocab_mapping import TOPK_NO_STUDENT_ID, MapToStudentVocab
from beam_jobs.write_shards import WriteShards, read_shard_index
from teacher_scoring.records import manifest as manifest_lib

# Counter keys that go to a manifest's `dropped` (the rest go to `counters`).
DROP_REASONS = tuple(EXAMPLE_DROP_REASONS) + tuple(MAPPING_DROP_REASONS) + tuple(
    SCORING_DROP_REASONS) + (metrics.DUPLICATE_COPIES,)


class JobSetupError(ValueError):
    """The job cannot start (bad teacher, vocab, corpus or output folder); nothing was run."""


@dataclasses.dataclass
class PreparedJob:
    """Everything validated before the pipeline is built."""

    config: JobConfig
    student_vocab_sha256: str
    student_vocab_size: int
    maps: dict[str, np.ndarray]
    teachers: dict[str, TeacherSpec]
    teacher_entries: dict[str, manifest_lib.TeacherEntry]


def resolve_config(config: JobConfig) -> JobConfig:
    """Local relative paths made absolute (workers may run elsewhere than the launcher)."""
    data = config.to_dict()
    data["student_vocab"] = resolve_path(config.student_vocab)
    data["output_dir"] = resolve_path(config.output_dir)
    for entry in data["languages"].values():
        entry["corpus"] = [resolve_path(g) for g in entry["corpus"]]
    for entry in data["teachers"].values():
        entry["path"] = resolve_path(entry["path"])
    from beam_jobs import job_config  # pylint: disable=import-outside-toplevel
    return job_config.from_dict(data, source=config.source)


def _scoring_key(name: str, config: JobConfig) -> loaded_teachers.ScoringKey:
    """The teacher and scoring function of `name` as the job's workers load them
    (`TeacherModelHandler.scoring_key` of the handler `build_pipeline` makes)."""
    entry = config.teachers[name]
    return loaded_teachers.ScoringKey(
        loaded_teachers.teacher_key(entry.path, entry.format, name, entry.languages),
        config.top_k, config.jit_compile, config.compute_dtype)


def release_teachers(config: JobConfig) -> None:
    """Drops the teachers `prepare_job` left in this process for the job's workers
    (`loaded_teachers`); `run_job` does it when the job ends."""
    for name in config.teachers:
        loaded_teachers.release(_scoring_key(name, config).teacher)


def _check_teacher(name: str, config: JobConfig, student_vocab) -> tuple[TeacherSpec,
                                                                       manifest_lib.TeacherEntry]:
    """Loads one teacher and checks it against the job; JobSetupError names it and the problem.

    The teacher and its scoring function stay in this process (`loaded_teachers`) for the
    workers that run in it (in_memory): the test batch is scored with the workers' function
    (top_k, jit_compile, compute_dtype) at their static shape [inference_batch_size, S], its
    first row the test row and the others padding (copies of it, as the workers pad), so a
    worker of this process neither builds the teacher nor traces its function again."""
    entry = config.teachers[name]
    where = f"{config.source}: teachers.{name} ({entry.path})"
    key = _scoring_key(name, config)
    try:
        teacher = loaded_teachers.teacher(key.teacher)
    except Exception as error:  # pylint: disable=broad-except
        raise JobSetupError(f"{where}: cannot load the teacher: {error}") from error
    if name not in student_vocab.maps:
        raise JobSetupError(f"{where}: the student vocab {config.student_vocab} has no map for "
                            f"this teacher (it has {student_vocab.teacher_names})")
    try:
        student_vocab.check_teacher_vocab(name, teacher.vocab)
    except ValueError as error:
        raise JobSetupError(f"{where}: {error}") from error
    if teacher.max_sequence_length is not None and teacher.max_sequence_length < config.seq_length:
        raise JobSetupError(f"{where}: accepts at most {teacher.max_sequence_length} tokens but "
                            f"seq_length is {config.seq_length}")
    try:
        _, score_fn = loaded_teachers.get(key)
        tokenizer = teacher.tokenizer()
        s, p = config.seq_length, config.max_predictions_per_seq
        ids = np.full([1, s], tokenizer.pad_id, np.int32)
        ids[0, :3] = [tokenizer.cls_id, tokenizer.mask_id, tokenizer.sep_id]
        mask = np.zeros([1, s], np.int32)
        mask[0, :3] = 1
        positions = np.zeros([1, p], np.int32)
        positions[0, 0] = 1
        gold = np.zeros([1, p], np.int32)
        gold[0, 0] = tokenizer.unk_id
        weights = np.zeros([1, p], np.float32)
        weights[0, 0] = 1.0
        test_row = {"input_word_ids": ids, "input_mask": mask,
                    "input_type_ids": np.zeros_like(ids), "masked_lm_positions": positions,
                    "masked_lm_ids": gold, "masked_lm_weights": weights}
        rows = config.inference_batch_size
        out = score_fn({field: np.repeat(value, rows, axis=0)
                        for field, value in test_row.items()})
        topk_logits = np.asarray(out["topk_logits"])
        loss = np.asarray(out["teacher_loss"])[:1]       # row 0, the test row
        if topk_logits.shape != (rows, p, config.top_k) \
                or not np.all(np.isfinite(topk_logits[0])) or not np.all(np.isfinite(loss)):
            raise ValueError(f"a test batch gave top-k logits of shape {topk_logits.shape} and "
                             f"loss {loss.tolist()} (expected finite values of shape "
                             f"{(rows, p, config.top_k)})")
    except Exception as error:  # pylint: disable=broad-except
        raise JobSetupError(f"{where}: scoring a test batch failed: {error}") from error
    # A teacher whose logits do not fit the storage dtype would send every copy to the dead
    # letters: refuse the job instead.
    problem = unwritable_scores(weights[0], topk_logits[0], float(loss[0]), config.logits_dtype)
    if problem is not None:
        raise JobSetupError(f"{where}: its scores cannot be written: {problem[1]}")
    spec = TeacherSpec(name=name, vocab=tuple(teacher.vocab), lower_case=teacher.lower_case)
    manifest_entry = teacher.manifest_entry()
    manifest_entry.languages = list(entry.languages)
    manifest_entry.format = teacher.format or entry.format
    manifest_entry.path = entry.path
    logging.info("teacher %s: %s, %d tokens, %s, languages %s", name, manifest_entry.format,
                 teacher.vocab_size, "uncased" if teacher.lower_case else "cased",
                 list(entry.languages))
    return spec, manifest_entry


def prepare_job(config: JobConfig, overwrite: bool = False) -> PreparedJob:
    """Validates everything that can be validated before the pipeline (module docstring)."""
    from vocab.union import StudentVocab  # pylint: disable=import-outside-toplevel

    config = resolve_config(config)
    for language, entry in config.languages.items():
        try:
            files = check_corpus(language, entry.corpus, where=config.source)
        except ValueError as error:
            raise JobSetupError(str(error)) from error
        if config.is_gold_only(language):
            logging.info("language %s: %d corpus file(s), gold-only (tokenizer of %s)",
                         language, len(files), config.tokenizers_of(language)[0])
        else:
            logging.info("language %s: %d corpus file(s), teachers %s", language, len(files),
                         config.teachers_of(language))
    try:
        output.check_output(config.output_dir, config.languages, overwrite)
    except output.OutputError as error:
        raise JobSetupError(str(error)) from error
    try:
        student_vocab = StudentVocab.load(config.student_vocab)
    except Exception as error:  # pylint: disable=broad-except
        raise JobSetupError(f"{config.source}: student_vocab {config.student_vocab}: "
                            f"{error}") from error
    specs, entries = {}, {}
    try:
        for name in config.teachers:
            specs[name], entries[name] = _check_teacher(name, config, student_vocab)
    except BaseException:
        release_teachers(config)
        raise
    return PreparedJob(config=config, student_vocab_sha256=student_vocab.sha256,
                       student_vocab_size=student_vocab.size,
                       maps={name: np.asarray(student_vocab.maps[name])
                             for name in config.teachers},
                       teachers=specs, teacher_entries=entries)


def build_pipeline(pipeline: beam.Pipeline, job: PreparedJob, tmp_dir: str) -> None:
    """Adds the scoring job's steps to `pipeline`, writing into `tmp_dir`."""
    config = job.config
    examples, gold_only_examples, letters = [], [], []
    for language, entry in config.languages.items():
        documents = pipeline | f"ReadCorpus[{language}]" >> ReadCorpus(
            language, entry.corpus, config.document_format)
        built = documents | f"BuildMaskedExamples[{language}]" >> BuildMaskedExamples(
            language, [job.teachers[t] for t in config.tokenizers_of(language)], config)
        (gold_only_examples if config.is_gold_only(language) else examples).append(
            built[BuildMaskedExamples.EXAMPLES])
        letters.append(built[dl.DEAD_LETTER])
    handlers = {
        name: TeacherModelHandler(
            name=name, path=t.path, format=t.format, languages=t.languages,
            seq_length=config.seq_length, max_predictions_per_seq=config.max_predictions_per_seq,
            top_k=config.top_k, batch_size=config.inference_batch_size,
            jit_compile=config.jit_compile, logits_dtype=config.logits_dtype,
            compute_dtype=config.compute_dtype)
        for name, t in config.teachers.items()}
    # Canonical batches: a teacher's copies batched by (language, output shard), from the data
    # alone (score.ScoreWithTeachers), so that the bytes do not depend on the runner's bundles.
    canonical = ({lang: e.num_shards for lang, e in config.languages.items()}
                 if config.canonical_batches else None)
    scored = (examples | "FlattenExamples" >> beam.Flatten()
              | "ScoreWithTeachers" >> ScoreWithTeachers(handlers, canonical))
    letters.append(scored[dl.DEAD_LETTER])
    to_map = scored[SCORED]
    if gold_only_examples:
        # Gold-only copies are never scored: straight to the mapping (no teacher fields).
        to_map = [to_map] + gold_only_examples | "WithGoldOnlyExamples" >> beam.Flatten()
    mapped = to_map | "MapToStudentVocab" >> MapToStudentVocab(
        job.maps, config.shard_spec, config.gold_only_languages)
    letters.append(mapped[dl.DEAD_LETTER])
    best_languages = [lang for lang in config.languages if config.copies_mode_of(lang) == "best"]
    _ = (mapped[MapToStudentVocab.RECORDS]
         | "SelectBestCopy" >> SelectBestCopy(best_languages)
         | "WriteShards" >> WriteShards(
             tmp_dir, {lang: e.num_shards for lang, e in config.languages.items()},
             config.compression))
    _ = (letters | "FlattenDeadLetters" >> beam.Flatten()
         | "WriteDeadLetters" >> dl.WriteDeadLetters(os.path.join(tmp_dir, output.DEAD_LETTER_DIR)))


def _zero_drops(teachers: Sequence[str], scored: bool = True) -> dict[str, int]:
    """Every drop reason a language can have, at 0: a manifest lists what was not dropped too.
    A gold-only language (`scored` False) has no scoring stage and no top-k entries."""
    zeros = {reason: 0 for reason in EXAMPLE_DROP_REASONS if reason != NO_MASKED_TOKEN}
    zeros[f"{metrics.DEAD_LETTER}/{dl.BUILD_EXAMPLES}"] = 0
    mapping_reasons = tuple(MAPPING_DROP_REASONS)
    if not scored:
        mapping_reasons = tuple(r for r in mapping_reasons if r != TOPK_NO_STUDENT_ID)
    for teacher in teachers:
        reasons = mapping_reasons + (metrics.DUPLICATE_COPIES, NO_MASKED_TOKEN)
        if scored:
            reasons += tuple(SCORING_DROP_REASONS)
        for reason in reasons:
            zeros[f"{teacher}/{reason}"] = 0
        for stage in ((dl.SCORE, dl.MAP_TO_STUDENT) if scored else (dl.MAP_TO_STUDENT,)):
            zeros[f"{teacher}/{metrics.DEAD_LETTER}/{stage}"] = 0
    return zeros


def build_manifests(job: PreparedJob, tmp_dir: str,
                    counters: Mapping[str, int]) -> dict[str, manifest_lib.Manifest]:
    """One manifest per language from the shard index (what is on disk) and the counters."""
    config = job.config
    infos = read_shard_index(tmp_dir)
    manifests = {}
    for language in config.languages:
        gold_only = config.is_gold_only(language)
        teachers = config.tokenizers_of(language)
        mine = [i for i in infos if i["language"] == language]
        counts = {t: manifest_lib.TeacherCounts(real_tokens=0) for t in teachers}
        for info in mine:
            for teacher, c in info["teachers"].items():
                counts[teacher].examples += c["examples"]
                counts[teacher].masked_tokens += c["masked_tokens"]
                counts[teacher].real_tokens += c["real_tokens"]
        examples = sum(i["examples"] for i in mine)
        real_tokens = sum(i["real_tokens"] for i in mine)
        # A gold-only language's tokenizer teacher ran no inference for it: no job/<teacher>/
        # inference counters in its manifest.
        dropped, other = metrics.language_counters(counters, language,
                                                   () if gold_only else teachers, DROP_REASONS)
        dropped = {**_zero_drops(teachers, scored=not gold_only), **dropped}
        manifests[language] = manifest_lib.Manifest(
            seq_length=config.seq_length,
            max_predictions_per_seq=config.max_predictions_per_seq,
            top_k=config.top_k, logits_dtype=config.logits_dtype,
            has_teacher_outputs=not gold_only,
            id_space="student", vocab_sha256=job.student_vocab_sha256,
            vocab_size=job.student_vocab_size,
            teachers={t: job.teacher_entries[t] for t in teachers},
            languages={language: manifest_lib.LanguageEntry(
                examples=examples,
                masked_tokens=sum(i["masked_tokens"] for i in mine),
                shards=[i["file"] for i in sorted(mine, key=lambda i: i["index"])],
                teachers=counts,
                unique_examples=sum(i["unique_examples"] for i in mine),
                real_tokens=real_tokens,
                token_utilization=manifest_lib.token_utilization(real_tokens, examples,
                                                                 config.seq_length))},
            seed=config.seed, copies_mode=config.copies_mode_of(language),
            compression=config.compression, dropped=dropped, counters=other,
            config=config.to_dict(), packing=config.packing)
    return manifests


@dataclasses.dataclass
class JobResult:
    output_dir: str
    manifests: dict[str, manifest_lib.Manifest]
    counters: dict[str, int]
    dead_letters: int
    seconds: float
    # Temporary folders of killed runs removed before this run / kept (path, reason).
    temp_dirs: output.TempDirCleanup = dataclasses.field(default_factory=output.TempDirCleanup)


DASK_RUNNER = "beam_jobs.dask_runner.DaskRunner"


def default_pipeline_args(pipeline_args: Sequence[str]) -> list[str]:
    """DirectRunner in `in_memory` mode unless the arguments say otherwise; `DaskRunner` is
    this project's completion of Beam's (beam_jobs/dask_runner.py).

    in_memory is the DirectRunner's fastest mode for this job (bench/bench_scoring.py,
    docs/scoring_job.md): the teacher's TensorFlow ops already use every core, while
    multi_processing loads and compiles every teacher once per worker process and moves every
    element between processes. `multi_processing` gets one worker per core when not given.
    """
    args = list(pipeline_args)
    joined = " ".join(args)
    if "--runner" not in joined:
        args.append("--runner=DirectRunner")
    runner = PipelineOptions(args).get_all_options()["runner"] or "DirectRunner"
    if runner in ("DaskRunner", "apache_beam.runners.dask.dask_runner.DaskRunner"):
        # Beam 2.77's DaskRunner cannot run this job; beam_jobs.dask_runner completes it.
        args.append(f"--runner={DASK_RUNNER}")
    if "Direct" in runner:
        if "--direct_running_mode" not in joined:
            args.append("--direct_running_mode=in_memory")
        mode = PipelineOptions(args).get_all_options()["direct_running_mode"]
        if "--direct_num_workers" not in joined and mode != "in_memory":
            args.append(f"--direct_num_workers={os.cpu_count() or 1}")
    return args


def run_job(config: JobConfig, pipeline_args: Sequence[str] = (), overwrite: bool = False,
            job: PreparedJob | None = None) -> JobResult:
    """Validates, runs, writes the manifests and moves the output into place."""
    start = time.monotonic()
    if job is None:
        job = prepare_job(config, overwrite)
    config = job.config
    try:
        options = PipelineOptions(default_pipeline_args(pipeline_args))
        cleanup = output.remove_stale_temp_dirs(config.output_dir)
        tmp_dir = output.make_temp_dir(config.output_dir)
        logging.info("scoring job %s → %s (temporary folder %s)", config.source,
                     config.output_dir, tmp_dir)
        try:
            pipeline = beam.Pipeline(options=options)
            build_pipeline(pipeline, job, tmp_dir)
            result = pipeline.run()
            _wait(result)
            counters = metrics.query_counters(result)
            metrics.log_counters(counters, "scoring job counters")
            manifests = build_manifests(job, tmp_dir, counters)
            for language, manifest in manifests.items():
                manifest_lib.write_manifest(manifest, os.path.join(tmp_dir, language))
            output.move_into_place(tmp_dir, config.output_dir, config.languages, overwrite)
        except BaseException:
            output.remove_tree(tmp_dir)
            raise
    finally:
        # The teachers prepare_job left for in-process workers (loaded_teachers).
        release_teachers(config)
    dead = sum(v for k, v in counters.items() if f"/{metrics.DEAD_LETTER}/" in k)
    for language, manifest in manifests.items():
        entry = manifest.languages[language]
        logging.info("%s: %d examples (%d distinct), %d masked tokens in %d shards (%s); token "
                     "utilization %.3f (real positions / all positions at S = %d)", language,
                     entry.examples, entry.unique_examples, entry.masked_tokens,
                     len(entry.shards),
                     ", ".join(f"{t}: {c.examples}" for t, c in entry.teachers.items()),
                     entry.token_utilization, config.seq_length)
    if dead:
        logging.warning("%d records went to the dead-letter output %s", dead,
                        output.dead_letter_files(config.output_dir))
    unwritable = {k: v for k, v in counters.items()
                  if k.split("/")[-1] in SCORING_DROP_REASONS and v}
    if unwritable:
        logging.warning("copies whose teacher scores could not be written (dead letters): %s",
                        unwritable)
    return JobResult(output_dir=config.output_dir, manifests=manifests, counters=counters,
                     dead_letters=dead, seconds=time.monotonic() - start, temp_dirs=cleanup)


def _wait(result, poll_seconds: float = 60.0) -> None:
    """Waits for the run, logging the counters every `poll_seconds` on runners that return
    before the job ends (Dataflow, PortableRunner, Dask); raises if the job did not succeed.

    One blocking `wait_until_finish()`, the progress from a thread: the PortableRunner's
    result (also Flink's and Spark's) cannot be waited on twice with a duration — every call
    starts new readers of the job service's one message stream, and the second fails with
    "ValueError: generator already executing" (tests/beam_jobs/test_runners.py)."""
    import threading  # pylint: disable=import-outside-toplevel

    from apache_beam.runners.runner import PipelineState  # pylint: disable=import-outside-toplevel

    if not PipelineState.is_terminal(result.state):
        finished = threading.Event()

        def log_progress():
            if _metrics_frozen_by_query(result):
                return
            while not finished.wait(poll_seconds):
                try:
                    metrics.log_counters(metrics.query_counters(result), "progress")
                except Exception as error:  # pylint: disable=broad-except
                    logging.info("progress: counters not available yet (%s)", error)

        progress = threading.Thread(target=log_progress, name="scoring-progress", daemon=True)
        progress.start()
        try:
            result.wait_until_finish()
        finally:
            finished.set()
    if result.state != PipelineState.DONE:
        raise RuntimeError(f"the scoring pipeline ended in state {result.state}")


def _metrics_frozen_by_query(result) -> bool:
    """The PortableRunner's result (also Flink's, Spark's, Prism's) keeps the first answer of
    `metrics()`: querying it while the job runs would freeze the counters at that moment, and
    the manifests would get them (empty). Its counters are read once, at the end."""
    from apache_beam.runners.portability import portable_runner  # pylint: disable=import-outside-toplevel

    return isinstance(result, portable_runner.PipelineResult)
