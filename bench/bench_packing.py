r"""Benchmark of sequence packing: token utilization before and after, per language, S 128 / 512.

Token utilization = real positions / all positions = sum of input_mask / (sequences x S): the
share of every sequence the teachers (and later the student) spend on text rather than padding.
It is measured on the examples the scoring job builds (`teacher_scoring.examples.create_examples`, the
function `BuildMaskedExamples` runs), for every copy of every example:

  * before: one paragraph a line (`document_format: line`): every paragraph is its own document
    and its own sequence (the corpora's own format);
  * after:  the same paragraphs in BERT's format (`document_format: blank_line`), a document =
    a run of `--paragraphs_per_document` consecutive lines, a blank line between documents, read
    back with the job's document reader; the segmenter packs a document's lines into sequences
    of up to S - 2 pieces, never across documents. `--short_seq_prob` as in the job config.

The corpora are `../shared/corpora/train/<lang>.txt` beside the clone (`--corpora`) (first `--lines` lines of each; one
paragraph a line, interleaved from several sources: the files have no document structure, so a
"document" here is a run of consecutive lines). Every language gets the two teachers of a
two-teacher language: WordPiece vocabularies trained on the union of the samples, one cased
(`--cased_vocab_size`) and one uncased (`--uncased_vocab_size`); cuts must suit both (common word
boundaries), so the copy of the teacher that splits finer fills its sequences and the other
copy's are shorter (reported per copy). "uncased alone" is the same text with the uncased
teacher as the only one (a one-teacher language, as in the paper's Student_similar /
_dissimilar: every language has one teacher).

Expected shape: every sequence of a document is full but its last, so
utilization ~ 1 - (S - 2) / (2 x mean document length in pieces) for long documents.

Then, with a realistic spread of document lengths ("spread" tables), within-document packing
(BERT's format, `packing: within_document`) against full-sentences packing (`packing:
full_sentences`, RoBERTa's: sequences filled across documents, a separator between them): a
document is a run of consecutive lines whose count is drawn from a log-normal distribution
(median `--spread_median_paragraphs`, sigma `--spread_sigma`, at least 1; seeded), so the
documents' lengths in pieces follow the corpora's own paragraph lengths; the percentiles of the
documents' lengths (uncased pieces) are printed. Documents are packed in the order of their
hashes, as in one packing group of the scoring job (`beam_jobs.build_examples`); the figures are
over every copy ("both copies"), the copy of the teacher that splits finest ("finest copy": the
one whose sequences are filled; the other teacher's copy of the same text is shorter), and the
uncased teacher as a language's only teacher ("one teacher", as in the paper's
Student_similar / _dissimilar). `--spread_lines` lines of each language are used.

    .venv/bin/python bench/bench_packing.py                       # 10 languages, 2048 lines each
    .venv/bin/python bench/bench_packing.py --paragraphs_per_document=256 --short_seq_prob=0.1
    .venv/bin/python bench/bench_packing.py --paragraphs_per_document= --seq_lengths=512  # spread only
"""

from __future__ import annotations

import collections
import os
import pathlib
import tempfile
import time

from absl import app, flags
import numpy as np

FLAGS = flags.FLAGS
LANGUAGES = ("ar", "de", "en", "es", "fi", "fr", "hi", "it", "tr", "zh")

flags.DEFINE_string("corpora", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                         "..", "shared", "corpora", "train"),
                    "Folder of <lang>.txt files (default: ../shared/corpora/train beside the clone).")
flags.DEFINE_list("languages", list(LANGUAGES), "Languages to measure.")
flags.DEFINE_integer("lines", 2048, "Lines (paragraphs) read from the start of each file.")
flags.DEFINE_list("seq_lengths", ["128", "512"], "Values of S.")
flags.DEFINE_list("paragraphs_per_document", ["64", "256"],
                  "Document sizes (consecutive lines a document) of the blank_line runs.")
flags.DEFINE_float("short_seq_prob", 0.0, "BERT's short_seq_prob for the packed runs.")
flags.DEFINE_integer("cased_vocab_size", 30000, "Cased teacher's WordPiece vocab size.")
flags.DEFINE_integer("uncased_vocab_size", 20000, "Uncased teacher's WordPiece vocab size.")
flags.DEFINE_float("target", 0.95, "Utilization target of the packed runs.")
flags.DEFINE_integer("spread_lines", 4096, "Lines of each language for the spread tables (0: none).")
flags.DEFINE_float("spread_median_paragraphs", 12.0, "Median paragraphs a document (spread tables).")
flags.DEFINE_float("spread_sigma", 1.1, "Sigma of the log-normal paragraphs a document.")
flags.DEFINE_integer("spread_seed", 1, "Seed of the document lengths (spread tables).")
flags.DEFINE_float("full_sentences_target", 0.99, "Utilization target of full-sentences packing "
                   "at the largest S (one teacher, and the finest copy).")


def read_sample(language: str, limit: int | None = None) -> list[str]:
    path = pathlib.Path(FLAGS.corpora) / f"{language}.txt"
    limit = FLAGS.lines if limit is None else limit
    lines = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                lines.append(line.rstrip("\n"))
            if len(lines) == limit:
                break
    return lines


def spread_documents(lines: list[str], rng: np.random.Generator) -> list[str]:
    """Runs of consecutive lines, each of a log-normal number of lines (BERT's format: a
    document's lines joined with newlines, as the blank_line reader gives them)."""
    documents, i = [], 0
    while i < len(lines):
        k = max(1, int(round(rng.lognormal(np.log(FLAGS.spread_median_paragraphs),
                                           FLAGS.spread_sigma))))
        documents.append("\n".join(lines[i:i + k]))
        i += k
    return documents


def spread_tables(tokenizers, seq_lengths, start):
    """Within-document against full-sentences packing on documents of a realistic spread of
    lengths; returns {(S, packing, column): utilization} over all languages."""
    from teacher_scoring.examples import segmentation
    from teacher_scoring.examples.tokenization import clean_text

    rng = np.random.default_rng(FLAGS.spread_seed)
    alone = {"uncased": tokenizers["uncased"]}
    lengths = []
    per_language = collections.defaultdict(dict)
    overall = collections.defaultdict(lambda: collections.defaultdict(lambda: [0, 0]))
    num_documents = 0
    for language in FLAGS.languages:
        documents = spread_documents(read_sample(language, FLAGS.spread_lines), rng)
        documents.sort(key=lambda d: segmentation.document_hash(clean_text(d)))
        num_documents += len(documents)
        lengths += [len(t.ids) for t in tokenizers["uncased"].tokenize_with_offsets(
            [clean_text(d) for d in documents])]
        for s in seq_lengths:
            for packing in segmentation.PACKINGS:
                for column, teachers in (("both", tokenizers), ("alone", alone)):
                    totals, _ = utilization(documents, language, teachers, s, 0.0, packing)
                    per_language[(s, packing, column)][language] = totals
                    for teacher, (n, real) in totals.items():
                        overall[(s, packing, column)][teacher][0] += n
                        overall[(s, packing, column)][teacher][1] += real
        print(f"{language} spread done ({time.time() - start:.0f} s)", flush=True)

    lengths = np.array(lengths)
    print(f"\nSpread of document lengths: {num_documents} documents of "
          f"{', '.join(FLAGS.languages)} (runs of log-normal many lines: median "
          f"{FLAGS.spread_median_paragraphs:g}, sigma {FLAGS.spread_sigma:g}); uncased pieces a "
          f"document: p10 {np.percentile(lengths, 10):.0f}, p25 {np.percentile(lengths, 25):.0f}, "
          f"median {np.median(lengths):.0f}, p75 {np.percentile(lengths, 75):.0f}, p90 "
          f"{np.percentile(lengths, 90):.0f}, mean {lengths.mean():.0f}, max {lengths.max()}")
    for s in seq_lengths:
        print(f"  S = {s}: {np.mean(lengths <= s - 2):.1%} of the documents fit one sequence, "
              f"{np.mean(lengths <= 2 * (s - 2)):.1%} two")
    results = {}
    for s in seq_lengths:
        print(f"\nS = {s}, spread of document lengths: token utilization\n")
        header = ["lang"]
        for packing in segmentation.PACKINGS:
            header += [f"{packing}: both copies", "finest copy", "one teacher"]
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for language in FLAGS.languages + ["**all**"]:
            row = [language]
            for packing in segmentation.PACKINGS:
                if language == "**all**":
                    both, one = overall[(s, packing, "both")], overall[(s, packing, "alone")]
                else:
                    both = per_language[(s, packing, "both")][language]
                    one = per_language[(s, packing, "alone")][language]
                finest = max(ratio(both, s, [t]) for t in both)
                values = (ratio(both, s), finest, ratio(one, s))
                if language == "**all**":
                    for column, value in zip(("both", "finest", "alone"), values):
                        results[(s, packing, column)] = value
                row += [f"{v:.3f}" for v in values]
            print("| " + " | ".join(row) + " |")
    s = max(seq_lengths)
    for column, name in (("alone", "one teacher"), ("finest", "finest copy"),
                         ("both", "both copies")):
        value = results[(s, "full_sentences", column)]
        verdict = ("met" if value >= FLAGS.full_sentences_target else "MISSED"
                   ) if column != "both" else "no target: the coarser copy is shorter"
        print(f"S = {s}, spread, full_sentences, {name}: {value:.3f} (within_document "
              f"{results[(s, 'within_document', column)]:.3f}; target >= "
              f"{FLAGS.full_sentences_target}: {verdict})")
    return results


def write_blank_line(lines: list[str], per_document: int, path: pathlib.Path) -> int:
    """Writes runs of `per_document` lines separated by blank lines; returns the documents."""
    documents = [lines[i:i + per_document] for i in range(0, len(lines), per_document)]
    path.write_text("\n\n".join("\n".join(d) for d in documents) + "\n", encoding="utf-8")
    return len(documents)


def utilization(documents, language, tokenizers, seq_length, short_seq_prob,
                packing="within_document"):
    """teacher → [sequences, real positions] over every copy of every example."""
    from teacher_scoring.examples import create_examples
    from teacher_scoring.examples.masking import MaskingConfig

    config = MaskingConfig(seq_length=seq_length, max_predictions_per_seq=max(
        1, round(0.15 * seq_length)), seed=12345, short_seq_prob=short_seq_prob,
        packing=packing)
    counts = collections.Counter()
    totals = collections.defaultdict(lambda: [0, 0])
    for example in create_examples.create_examples(documents, language, tokenizers, config,
                                                   counts):
        totals[example.teacher][0] += 1
        totals[example.teacher][1] += int(np.sum(example.input_mask))
    return totals, counts


def ratio(totals, seq_length, teachers=None):
    n = sum(v[0] for t, v in totals.items() if teachers is None or t in teachers)
    real = sum(v[1] for t, v in totals.items() if teachers is None or t in teachers)
    return real / (n * seq_length) if n else float("nan")


def main(argv):
    del argv
    from teacher_scoring.examples import create_examples
    from teacher_scoring.examples.tokenization import TeacherTokenizer
    from vocab.train_wordpiece import train_wordpiece

    start = time.time()
    samples = {language: read_sample(language) for language in FLAGS.languages}
    union = [line for lines in samples.values() for line in lines]
    tokenizers = {
        "cased": TeacherTokenizer(train_wordpiece(union, FLAGS.cased_vocab_size, False), False),
        "uncased": TeacherTokenizer(train_wordpiece(union, FLAGS.uncased_vocab_size, True), True),
    }
    alone = {"uncased": tokenizers["uncased"]}
    print(f"teachers: {', '.join(f'{n} ({t.vocab_size} tokens)' for n, t in tokenizers.items())}"
          f" (WordPiece on the samples); {FLAGS.lines} lines a language; short_seq_prob "
          f"{FLAGS.short_seq_prob} (vocabs trained in {time.time() - start:.0f} s)")
    seq_lengths = [int(s) for s in FLAGS.seq_lengths]
    if FLAGS.spread_lines:
        spread_tables(tokenizers, seq_lengths, start)
    sizes = [int(n) for n in FLAGS.paragraphs_per_document]
    if not sizes:
        print(f"{time.time() - start:.0f} s in total")
        return
    # results[(language, S)][column] = teacher → [sequences, real]
    results = collections.defaultdict(dict)
    pieces = {}
    with tempfile.TemporaryDirectory(prefix="bench_packing_") as tmp:
        for language, lines in samples.items():
            pieces[language] = np.mean([len(tokenizers["uncased"].tokenize_with_offsets(
                [line])[0].ids) for line in lines[:500]])
            paths = {}
            for per_document in sizes:
                paths[per_document] = pathlib.Path(tmp) / f"{language}-{per_document}.txt"
                write_blank_line(lines, per_document, paths[per_document])
            for s in seq_lengths:
                cell = results[(language, s)]
                cell["before"], _ = utilization(lines, language, tokenizers, s, 0.0)
                for per_document, path in paths.items():
                    documents = list(create_examples.read_documents([str(path)], "blank_line"))
                    cell[per_document], counts = utilization(documents, language, tokenizers, s,
                                                             FLAGS.short_seq_prob)
                    assert counts["documents"] == len(documents)
                    cell[("alone", per_document)], _ = utilization(
                        documents, language, alone, s, FLAGS.short_seq_prob)
            print(f"{language} done ({time.time() - start:.0f} s)", flush=True)

    for s in seq_lengths:
        header = ["lang", "pieces/para", "before"]
        for n in sizes:
            header += [f"after {n}/doc", "cased copy", "uncased copy", "uncased alone"]
        print(f"\nS = {s}: token utilization (real positions / all positions)\n")
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        overall = collections.defaultdict(lambda: collections.defaultdict(lambda: [0, 0]))
        for language in samples:
            cell = results[(language, s)]
            row = [language, f"{pieces[language]:.1f}", f"{ratio(cell['before'], s):.3f}"]
            for n in sizes:
                row += [f"{ratio(cell[n], s):.3f}", f"{ratio(cell[n], s, ['cased']):.3f}",
                        f"{ratio(cell[n], s, ['uncased']):.3f}",
                        f"{ratio(cell[('alone', n)], s):.3f}"]
            for column, totals in cell.items():
                for teacher, (n, real) in totals.items():
                    overall[column][teacher][0] += n
                    overall[column][teacher][1] += real
            print("| " + " | ".join(row) + " |")
        row = ["**all**", "", f"**{ratio(overall['before'], s):.3f}**"]
        for n in sizes:
            row += [f"**{ratio(overall[n], s):.3f}**",
                    f"**{ratio(overall[n], s, ['cased']):.3f}**",
                    f"**{ratio(overall[n], s, ['uncased']):.3f}**",
                    f"**{ratio(overall[('alone', n)], s):.3f}**"]
        print("| " + " | ".join(row) + " |")
        for n in sizes:
            for name, value in (("both copies", ratio(overall[n], s)),
                                ("one teacher", ratio(overall[("alone", n)], s))):
                print(f"S = {s}, {n} paragraphs a document, {name}: {value:.3f} (target >= "
                      f"{FLAGS.target}: {'met' if value >= FLAGS.target else 'MISSED'})")
    print(f"{time.time() - start:.0f} s in total")


if __name__ == "__main__":
    app.run(main)
