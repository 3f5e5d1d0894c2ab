r"""A teacher report per language: which teachers to merge, and with `all` or `best`.

Before paying for a scoring job and a student run, this measures each candidate teacher on a
sample of each language's transfer corpus and writes OUT/report.md, OUT/report.json and
OUT/report.png:

  * vocabulary fit (per language and teacher, with the teacher's own TeacherTokenizer): share of
    whitespace words with an [UNK] piece, share of pieces that are [UNK], pieces per word
    (fertility), share of words kept whole (one piece, not [UNK]), share of characters lost in
    [UNK] pieces, and the characters the vocabulary lacks;
  * masked-LM quality on the SAME masked words for every teacher of the language: masked-piece
    accuracy, whole-word accuracy, loss per masked word and per masked piece, perplexity, each
    with a bootstrap 95% confidence interval over examples (paired: the same resamples for every
    teacher, so differences between teachers get their own interval);
  * for a language with several teachers: how often each would win `best` (lowest loss per
    masked word), and how much their top-k predictions agree (top-1 agreement and overlap@k on
    masked words that are one piece for both);
  * the union's cost: the student vocabulary size with all teachers and without each one, i.e.
    the tokens only that teacher brings (vocab.union.StudentVocab);
  * a recommendation per language (which teachers, `all` or `best`) by the rule in
    recommendation.py.

It runs the scoring job's own Beam building blocks — ReadCorpus → (sample) →
BuildMaskedExamples → ScoreWithTeachers — so the examples are segmented and masked exactly as
the job does (same seed, same shared masked words) and scored with `scoring.make_score_fn` through
TeacherModelHandler; no second tokenizer or masking. DirectRunner (in-memory) is the default;
the same pipeline runs on Dataflow for large samples (pass Beam options after the flags):

    python -m beam_jobs.teacher_report --config configs/scoring/demo.yaml \
        --sample_paragraphs 3000 --output_dir workspace/teacher_report      (cli.py: every flag)

One module per measurement, then the job that runs them (docs/teacher_report.md):

  sample.py          the sample: per language the documents with the smallest SHA-256(seed, .)
  vocabulary_fit.py  [UNK] words and pieces, pieces per word, words whole, characters lost
  masked_lm.py       per copy, example and language: accuracy, loss, perplexity on the same
                     masked words, top-k agreement of two teachers
  best_wins.py       how often each teacher's copy would win `best`
  bootstrap.py       the paired percentile bootstrap behind every interval
  union_cost.py      the student vocabulary with and without each teacher
  recommendation.py  the rule: which teachers, `all` or `best`, and the warnings
  rendering.py       report.json, report.md, report.png and the console summary
  pipeline.py        checks, the Beam pipeline (ReadCorpus → Sample → VocabularyFit /
                     BuildMaskedExamples → ScoreWithTeachers → ExampleRows), make_report,
                     run_report
  cli.py, __main__   the command line

From Python:

    from beam_jobs import teacher_report
    report = teacher_report.run_report(config, "workspace/teacher_report", sample_paragraphs=3000)
    print("\n".join(teacher_report.summary_lines(report)))
    report = teacher_report.read_report("workspace/teacher_report")
"""

from beam_jobs.teacher_report.pipeline import (TeacherReportError, build_report_pipeline,
                                               make_report, run_report)
from beam_jobs.teacher_report.rendering import (REPORT_JSON, REPORT_MD, REPORT_PNG, read_report,
                                                summary_lines, write_report)

__all__ = ["REPORT_JSON", "REPORT_MD", "REPORT_PNG", "TeacherReportError",
           "build_report_pipeline", "make_report", "read_report", "run_report", "summary_lines",
           "write_report"]
