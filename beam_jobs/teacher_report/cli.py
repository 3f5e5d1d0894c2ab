r"""Command line of the teacher report (`python -m beam_jobs.teacher_report`).

    # Point it at the scoring config you are going to run (strongly preferred):
    python -m beam_jobs.teacher_report --config configs/scoring/demo.yaml \
        --sample_paragraphs 3000 --output_dir workspace/teacher_report

    # Or name teachers and corpora directly:
    python -m beam_jobs.teacher_report \
        --teacher bert_en=teachers/bert_en:en --teacher mbert=teachers/mbert:en,de \
        --corpus en=corpora/en/train.txt --corpus de=corpora/de/train.txt \
        --output_dir /tmp/teacher_report

Flags not defined here are Beam pipeline options (default: DirectRunner in one process; pass
Dataflow options as for the scoring job for large samples). Bad input exits with status 2 and an
error naming the flag or config field.
"""

from __future__ import annotations

import sys
from typing import Sequence

from absl import flags

from beam_jobs import job_config
from beam_jobs.teacher_report.pipeline import TeacherReportError, run_report
from beam_jobs.teacher_report.rendering import REPORT_JSON, REPORT_MD, REPORT_PNG, summary_lines
from teacher_scoring import cli_logging


def parse_teacher_flag(value: str) -> tuple[str, str, list[str]]:
    """`--teacher NAME=PATH:lang1,lang2` → (name, path, languages); the path may hold ':'
    (gs://...), the languages are after the last ':'."""
    where = f"--teacher {value!r}"
    if "=" not in value:
        raise TeacherReportError(f"{where}: expected NAME=PATH:lang1,lang2, found no '='")
    name, rest = (part.strip() for part in value.split("=", 1))
    path, sep, languages = rest.rpartition(":")
    if not sep or not languages.strip() or "/" in languages:
        raise TeacherReportError(f"{where}: expected NAME=PATH:lang1,lang2 (the languages the "
                                 f"teacher serves after the last ':')")
    codes = [code.strip() for code in languages.split(",")]
    if not name or not path.strip() or not all(codes):
        raise TeacherReportError(f"{where}: empty name, path or language code")
    return name, path.strip(), codes


def parse_corpus_flag(value: str) -> tuple[str, str]:
    """`--corpus lang=FILE_GLOB` → (language, glob)."""
    language, sep, pattern = value.partition("=")
    if not sep or not language.strip() or not pattern.strip():
        raise TeacherReportError(f"--corpus {value!r}: expected LANG=FILE (a file glob, one "
                                 f"paragraph a line)")
    return language.strip(), pattern.strip()


# Masking and scoring settings of a report made without a scoring config (the flags' defaults).
FLAG_DEFAULTS = {"seq_length": 128, "max_predictions_per_seq": 20, "masked_lm_prob": 0.15,
                 "whole_word_masking": True, "top_k": 8, "inference_batch_size": 32,
                 "seed": 12345, "document_format": "line"}


def config_from_flags(teachers: Sequence[str], corpora: Sequence[str], output_dir: str,
                      **settings):
    """A JobConfig from `--teacher` / `--corpus` values and masking settings (FLAG_DEFAULTS
    for those not given).

    Raises:
      TeacherReportError: naming the flag: a corpus given twice, a teacher serving a language
        without a --corpus, a language no teacher serves.
    """
    if not teachers:
        raise TeacherReportError("--teacher: give at least one NAME=PATH:lang1,lang2 (or "
                                 "--config)")
    languages = {}
    for value in corpora:
        language, pattern = parse_corpus_flag(value)
        if language in languages:
            raise TeacherReportError(f"--corpus {value!r}: language {language!r} is given twice")
        languages[language] = {"corpus": [pattern], "num_shards": 1}
    teacher_entries = {}
    for value in teachers:
        name, path, served = parse_teacher_flag(value)
        if name in teacher_entries:
            raise TeacherReportError(f"--teacher {value!r}: teacher {name!r} is given twice")
        for language in served:
            if language not in languages:
                raise TeacherReportError(
                    f"--teacher {value!r}: language {language!r} has no --corpus "
                    f"(given: {sorted(languages)})")
        teacher_entries[name] = {"format": "auto", "path": path, "languages": served}
    for language in languages:
        if not any(language in t["languages"] for t in teacher_entries.values()):
            raise TeacherReportError(f"--corpus {language}=...: no --teacher serves language "
                                     f"{language!r}")
    data = {"student_vocab": "-", "output_dir": output_dir, "logits_dtype": "float32",
            "compression": "", "copies_mode": "best", "languages": languages,
            "teachers": teacher_entries, **FLAG_DEFAULTS, **settings}
    try:
        return job_config.from_dict(data, source="command line")
    except job_config.JobConfigError as error:
        raise TeacherReportError(str(error)) from error


# ---------------------------------------------------------------------------------- flags


def define_flags():
    """Defines the CLI's flags (on `python -m beam_jobs.teacher_report`, not on import)."""
    flags.DEFINE_string("config", None, "Scoring-job config YAML (configs/scoring/*.yaml): the "
                        "teachers, corpora and masking the job will use. Or --teacher/--corpus.")
    flags.DEFINE_multi_string("teacher", [], "NAME=PATH:lang1,lang2 (without --config).")
    flags.DEFINE_multi_string("corpus", [], "LANG=FILE_GLOB, one paragraph a line (without "
                              "--config).")
    flags.DEFINE_list("languages", [], "Report only these languages of the config.")
    flags.DEFINE_integer("sample_paragraphs", 3000, "Paragraphs sampled per language.")
    flags.DEFINE_integer("bootstrap_samples", 1000, "Bootstrap resamples for the 95% intervals.")
    flags.DEFINE_integer("seed", None, "Sampling / bootstrap seed (default: the config's seed).")
    flags.DEFINE_string("output_dir", None, "Folder for report.md, report.json, report.png.")
    flags.DEFINE_bool("overwrite", False, "Replace a report already in --output_dir.")
    # Masking and scoring settings when there is no --config (a config has its own).
    defaults = FLAG_DEFAULTS
    flags.DEFINE_integer("seq_length", defaults["seq_length"], "S (without --config).")
    flags.DEFINE_integer("max_predictions_per_seq", defaults["max_predictions_per_seq"],
                         "P (without --config).")
    flags.DEFINE_float("masked_lm_prob", defaults["masked_lm_prob"],
                       "Masked share (without --config).")
    flags.DEFINE_bool("whole_word_masking", defaults["whole_word_masking"],
                      "Whole-word masking (without --config).")
    flags.DEFINE_integer("top_k", defaults["top_k"], "k of the top-k agreement (without "
                         "--config).")
    flags.DEFINE_integer("inference_batch_size", defaults["inference_batch_size"],
                         "Teacher batch size (without --config).")
    flags.DEFINE_integer("masking_seed", defaults["seed"], "Masking seed (without --config).")
    flags.DEFINE_enum("document_format", defaults["document_format"], ["line", "blank_line"],
                      "Corpus format (without --config): a paragraph a line, or BERT's format "
                      "(a blank line between documents).")
    flags.mark_flag_as_required("output_dir")


def main(argv) -> int:
    """The CLI: a config (or --teacher/--corpus) → run_report → the summary; exit 2 on bad
    input, with the error naming the flag or config field."""
    flag_values = flags.FLAGS
    cli_logging.quiet_unless_verbose(own_progress=True)
    try:
        if flag_values.config:
            if flag_values.teacher or flag_values.corpus:
                raise TeacherReportError("--config: give either a config or --teacher/--corpus, "
                                         "not both")
            try:
                config = job_config.load_job_config(flag_values.config)
            except job_config.JobConfigError as error:
                raise TeacherReportError(str(error)) from error
        else:
            config = config_from_flags(
                flag_values.teacher, flag_values.corpus, output_dir=flag_values.output_dir,
                seq_length=flag_values.seq_length,
                max_predictions_per_seq=flag_values.max_predictions_per_seq,
                masked_lm_prob=flag_values.masked_lm_prob,
                whole_word_masking=flag_values.whole_word_masking, top_k=flag_values.top_k,
                inference_batch_size=flag_values.inference_batch_size,
                seed=flag_values.masking_seed, document_format=flag_values.document_format)
        report = run_report(config, flag_values.output_dir, flag_values.sample_paragraphs,
                            flag_values.bootstrap_samples, flag_values.seed,
                            flag_values.languages, argv[1:], flag_values.overwrite)
    except TeacherReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(summary_lines(report)))
    print(f"wrote {REPORT_MD}, {REPORT_JSON}, {REPORT_PNG} to {flag_values.output_dir} "
          f"({report['seconds']:.0f} s)")
    return 0


def parse_flags(argv):
    """absl parses its own flags; the rest (Beam pipeline options) goes to main."""
    return flags.FLAGS(argv, known_only=True)
