"""The teacher report's job: checks before launch, the Beam pipeline, the report after it.

    ReadCorpus[lang] → Sample[lang] ─┬→ VocabularyFit[lang] ─────────────────→ fit/*.jsonl
                                     └→ BuildMaskedExamples[lang] ─┐
    FlattenExamples → ScoreWithTeachers → ExampleRows (per example) ─→ rows/*.jsonl

ReadCorpus, BuildMaskedExamples and ScoreWithTeachers (with TeacherModelHandler) are the scoring
job's own transforms, so the examples are segmented, masked and scored exactly as the job does;
the sample (`sample.SampleDocuments`), the vocabulary fit (`vocabulary_fit.VocabularyFit`) and
the example rows (`masked_lm.ExampleRows`) are the report's. A gold-only language
(`tokenizer_teacher`, never scored) gets the vocabulary fit of every teacher of the config, no
masked-LM branch.

`run_report(config, output_dir)` is the whole report (the CLI, `beam_jobs.teacher_report`, only
parses flags):

  1. every check that can fail without data: the sample and bootstrap sizes, the languages,
     corpus globs, the output folder, every teacher loads (`load_teacher`) and accepts S tokens;
     a problem raises TeacherReportError naming the flag or config field;
  2. the pipeline writes its JSON lines into a temporary folder under output_dir (removed after);
  3. `make_report` computes the statistics (masked_lm, best_wins, bootstrap), the union's cost
     and the recommendation, and `rendering.write_report` writes report.{json,md,png}.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import time
import uuid
from typing import Any, Mapping, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineState
import tensorflow as tf

from beam_jobs import metrics, output
from beam_jobs.build_examples import BuildMaskedExamples, TeacherSpec
from beam_jobs.read_corpus import CorpusError, ReadCorpus, check_corpus
from beam_jobs.score import SCORED, ScoreWithTeachers
from beam_jobs.teacher_model_handler import TeacherModelHandler
from beam_jobs.teacher_report.bootstrap import stable_seed
from beam_jobs.teacher_report.masked_lm import ExampleRows, language_quality
from beam_jobs.teacher_report.recommendation import gold_only_recommendation, recommend
from beam_jobs.teacher_report.rendering import REPORT_JSON, REPORT_MD, REPORT_PNG, write_report
from beam_jobs.teacher_report.sample import BLANK_LINES, SAMPLED, SampleDocuments
from beam_jobs.teacher_report.union_cost import union_cost
from beam_jobs.teacher_report.vocabulary_fit import FitCounts, VocabularyFit
from teacher_scoring.teachers.loaders import load_teacher

FORMAT_VERSION = 1
TMP_PREFIX = ".tmp-report-"


class TeacherReportError(ValueError):
    """The report cannot be made (bad flag, config field, teacher or corpus); names the field."""


# ------------------------------------------------------------------------ before the pipeline


def check_languages(config, languages: Sequence[str]) -> list[str]:
    """The languages to report: `languages` (all of the config's when empty), in config order.

    Raises:
      TeacherReportError: a language the config does not have (naming --languages).
    """
    if not languages:
        return list(config.languages)
    unknown = [lang for lang in languages if lang not in config.languages]
    if unknown:
        raise TeacherReportError(f"--languages: {unknown} not in {config.source} (its "
                                 f"languages: {sorted(config.languages)})")
    return [lang for lang in config.languages if lang in languages]


def load_teachers(config) -> dict[str, Any]:
    """Loads every teacher of the config (`load_teacher`) and checks it accepts S tokens.

    Returns:
      name → Teacher.

    Raises:
      TeacherReportError: naming `teachers.<name>` and the problem.
    """
    loaded = {}
    for name, entry in config.teachers.items():
        where = f"{config.source}: teachers.{name} ({entry.path})"
        try:
            teacher = load_teacher(entry.path, format=entry.format, name=name,
                                   languages=entry.languages)
        except Exception as error:  # pylint: disable=broad-except
            raise TeacherReportError(f"{where}: cannot load the teacher: {error}") from error
        if (teacher.max_sequence_length is not None
                and teacher.max_sequence_length < config.seq_length):
            raise TeacherReportError(f"{where}: accepts at most {teacher.max_sequence_length} "
                                     f"tokens but seq_length is {config.seq_length}")
        loaded[name] = teacher
    return loaded


def default_pipeline_args(pipeline_args: Sequence[str]) -> list[str]:
    """DirectRunner in one process unless the arguments say otherwise (a sample of a few
    thousand paragraphs is scored faster than worker processes start)."""
    args = list(pipeline_args)
    joined = " ".join(args)
    if "--runner" not in joined:
        args.append("--runner=DirectRunner")
    if "--direct_running_mode" not in joined and "--runner=DirectRunner" in " ".join(args):
        args.append("--direct_running_mode=in_memory")
    return args


# ------------------------------------------------------------------------------ the pipeline


def build_report_pipeline(pipeline: beam.Pipeline, config, languages: Sequence[str],
                          teachers: Mapping[str, TeacherSpec], sample_paragraphs: int, seed: int,
                          tmp_dir: str) -> None:
    """Adds the report's steps to `pipeline` (module docstring), writing JSON lines under
    `tmp_dir`: fit/*.jsonl (`{language, teacher, counts}`) and rows/*.jsonl (`example_row`).

    Args:
      config: the JobConfig (its corpora, document format, masking settings and teachers).
      languages: the languages to report, a subset of config.languages.
      teachers: teacher name → TeacherSpec (vocab and casing) of every teacher in `config`.
      sample_paragraphs, seed: the sample's size per language and its seed.
    """
    examples, fits = [], []
    scoring_teachers = []
    for language in languages:
        entry = config.languages[language]
        documents = (pipeline
                     | f"ReadCorpus[{language}]" >> ReadCorpus(language, entry.corpus,
                                                               config.document_format)
                     | f"Sample[{language}]" >> SampleDocuments(language, sample_paragraphs,
                                                                seed))
        if config.is_gold_only(language):
            specs = list(teachers.values())
        else:
            specs = [teachers[t] for t in config.teachers_of(language)]
            scoring_teachers += [t for t in config.teachers_of(language)
                                 if t not in scoring_teachers]
            built = documents | f"BuildMaskedExamples[{language}]" >> BuildMaskedExamples(
                language, specs, config)
            examples.append(built[BuildMaskedExamples.EXAMPLES])
        fits.append(documents | f"VocabularyFit[{language}]" >> VocabularyFit(
            language, specs, config.document_batch_size))
    _ = (fits | "FlattenFit" >> beam.Flatten()
         | "WriteFit" >> beam.io.WriteToText(os.path.join(tmp_dir, "fit", "fit"),
                                             file_name_suffix=".jsonl"))
    if not examples:
        return
    teachers_of = {language: config.teachers_of(language) for language in languages}
    handlers = _model_handlers(config, scoring_teachers)
    scored = (examples | "FlattenExamples" >> beam.Flatten()
              | "ScoreWithTeachers" >> ScoreWithTeachers(handlers))
    _ = (scored[SCORED]
         | "ExampleRows" >> ExampleRows([teachers[t] for t in scoring_teachers], teachers_of,
                                        config.top_k)
         | "WriteRows" >> beam.io.WriteToText(os.path.join(tmp_dir, "rows", "rows"),
                                              file_name_suffix=".jsonl"))


def _model_handlers(config, names: Sequence[str]) -> dict[str, TeacherModelHandler]:
    """The scoring job's model handlers of these teachers, with float32 logits: the report keeps
    top-k ids and losses, never stored logits."""
    handlers = {}
    for name in names:
        t = config.teachers[name]
        handlers[name] = TeacherModelHandler(
            name=name, path=t.path, format=t.format, languages=t.languages,
            seq_length=config.seq_length, max_predictions_per_seq=config.max_predictions_per_seq,
            top_k=config.top_k, batch_size=config.inference_batch_size,
            jit_compile=config.jit_compile)
    return handlers


def _read_json_lines(pattern: str) -> list[dict]:
    out = []
    for path in sorted(tf.io.gfile.glob(pattern)):
        with tf.io.gfile.GFile(path, "r") as f:
            out.extend(json.loads(line) for line in f if line.strip())
    return out


# ------------------------------------------------------------------------- after the pipeline


def _language_counters(counters: Mapping[str, int], language: str) -> dict[str, int]:
    prefix = language + "/"
    return {k[len(prefix):]: v for k, v in counters.items() if k.startswith(prefix) and v}


def make_report(config, languages: Sequence[str], rows: Sequence[dict],
                fit_lines: Sequence[dict], counters: Mapping[str, int],
                vocabs: Mapping[str, Sequence[str]], settings: Mapping[str, Any],
                lower_case: Mapping[str, bool]) -> dict:
    """Assembles the report from the pipeline's outputs (pure: no I/O).

    Args:
      config: the JobConfig the pipeline ran.
      languages: the reported languages.
      rows: the example rows (`masked_lm.example_row`), all languages.
      fit_lines: {language, teacher, counts} per (language, teacher).
      counters: the pipeline's counters (beam_jobs.metrics names).
      vocabs: every teacher of the config → its tokens, in config order (the union).
      settings: sample_paragraphs, seed, bootstrap_samples, config, ... (recorded as given).
      lower_case: every teacher → uncased.
    """
    by_language = collections.defaultdict(list)
    for row in rows:
        by_language[row["language"]].append(row)
    fits = {(f["language"], f["teacher"]): FitCounts.from_dict(f["counts"]) for f in fit_lines}
    entries = {}
    for language in languages:
        gold_only = config.is_gold_only(language)
        teachers = list(vocabs) if gold_only else config.teachers_of(language)
        fit = {t: fits.get((language, t), FitCounts()).figures() for t in teachers}
        lang_counters = _language_counters(counters, language)
        entry = {
            "teachers": teachers,
            "uncased": {t: bool(lower_case[t]) for t in teachers},
            "gold_only": gold_only,
            "sample": {"lines_read": lang_counters.get("lines", 0),
                       "blank_lines": lang_counters.get(BLANK_LINES, 0),
                       "paragraphs": lang_counters.get(SAMPLED, 0)},
            "vocabulary_fit": fit,
            "counters": lang_counters,
        }
        if gold_only:
            entry["masked_lm"] = None
            entry["recommendation"] = gold_only_recommendation(
                language, config.languages[language].tokenizer_teacher, fit)
        else:
            entry["masked_lm"] = language_quality(
                by_language[language], teachers, settings["bootstrap_samples"],
                stable_seed(settings["seed"], language, "bootstrap"), config.top_k)
            entry["recommendation"] = recommend(teachers, fit, entry["masked_lm"], lower_case)
        entries[language] = entry
    return {"format_version": FORMAT_VERSION, "settings": dict(settings),
            "languages": entries, "union": union_cost(vocabs)}


def run_report(config, output_dir: str, sample_paragraphs: int = 3000,
               bootstrap_samples: int = 1000, seed: int | None = None,
               languages: Sequence[str] = (), pipeline_args: Sequence[str] = (),
               overwrite: bool = False) -> dict:
    """Checks the inputs, runs the report pipeline, writes OUT/report.{md,json,png}.

    Args:
      config: a scoring JobConfig (beam_jobs.job_config): its corpora, teachers and masking
        settings; its student_vocab and output_dir are not used.
      output_dir: the report folder (local or gs://).
      sample_paragraphs: paragraphs sampled per language.
      bootstrap_samples: bootstrap resamples for the intervals.
      seed: sampling and bootstrap seed; default the config's (masking always uses the config's
        seed, so the masked words are the job's).
      languages: report only these languages (default all).
      pipeline_args: Beam options (default DirectRunner in one process).
      overwrite: replace a report already in output_dir.

    Returns:
      The report dict (as written to report.json).

    Raises:
      TeacherReportError: bad inputs, naming the flag or config field.
    """
    start = time.monotonic()
    if not isinstance(sample_paragraphs, int) or sample_paragraphs < 1:
        raise TeacherReportError(f"--sample_paragraphs must be >= 1, got {sample_paragraphs!r}")
    if not isinstance(bootstrap_samples, int) or bootstrap_samples < 1:
        raise TeacherReportError(f"--bootstrap_samples must be >= 1, got {bootstrap_samples!r}")
    seed = config.seed if seed is None else int(seed)
    languages = check_languages(config, languages)
    for language in languages:
        entry = config.languages[language]
        try:
            check_corpus(language, entry.corpus, where=config.source)
        except CorpusError as error:
            raise TeacherReportError(str(error)) from error
    existing = [n for n in (REPORT_JSON, REPORT_MD, REPORT_PNG)
                if tf.io.gfile.exists(os.path.join(output_dir, n))]
    if existing and not overwrite:
        raise TeacherReportError(f"--output_dir {output_dir}: already holds {existing}; pass "
                                 f"--overwrite to replace the report")
    loaded = load_teachers(config)
    specs = {name: TeacherSpec(name=name, vocab=tuple(t.vocab), lower_case=t.lower_case)
             for name, t in loaded.items()}
    vocabs = {name: list(t.vocab) for name, t in loaded.items()}
    lower_case = {name: t.lower_case for name, t in loaded.items()}
    del loaded

    tmp_dir = os.path.join(output_dir, f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}")
    tf.io.gfile.makedirs(tmp_dir)
    args = default_pipeline_args(pipeline_args)
    logging.info("teacher report on %s: %d paragraphs a language, languages %s, Beam %s",
                 config.source, sample_paragraphs, languages, args)
    try:
        pipeline = beam.Pipeline(options=PipelineOptions(args))
        build_report_pipeline(pipeline, config, languages, specs, sample_paragraphs, seed,
                              tmp_dir)
        result = pipeline.run()
        result.wait_until_finish()
        if result.state != PipelineState.DONE:
            raise RuntimeError(f"the report pipeline ended in state {result.state}")
        counters = metrics.query_counters(result)
        rows = _read_json_lines(os.path.join(tmp_dir, "rows", "*"))
        fit_lines = _read_json_lines(os.path.join(tmp_dir, "fit", "*"))
    finally:
        output.remove_tree(tmp_dir)
    settings = {
        "config": config.source, "sample_paragraphs": sample_paragraphs, "seed": seed,
        "bootstrap_samples": bootstrap_samples, "top_k": config.top_k,
        "seq_length": config.seq_length,
        "max_predictions_per_seq": config.max_predictions_per_seq,
        "masked_lm_prob": config.masked_lm_prob,
        "whole_word_masking": config.whole_word_masking, "masking_seed": config.seed,
        "document_format": config.document_format, "short_seq_prob": config.short_seq_prob,
        "pipeline_args": args,
    }
    report = make_report(config, languages, rows, fit_lines, counters, vocabs, settings,
                         lower_case)
    report["seconds"] = time.monotonic() - start
    report["output_dir"] = output_dir
    write_report(report, output_dir)
    return report
