r"""How stable is `best` (paper §3.1)? The same example, masked with two different seeds: does
`best` keep the same teacher's copy?

For a language with two teachers, every example (segment) is built twice, with masking seeds
A and B, in two ways:

  * before (independent masks, the old recipe): each teacher's copy masks its own random
    pieces (`masking.mask_segment`, seeded by (seed, example_id, teacher)) and `best` keeps the
    copy with the lower mean cross-entropy per masked *piece* (`teacher_loss`);
  * after (shared masks, the scoring job's recipe now): the masked words are chosen once per
    example on the words both tokenizations agree on (`masking.mask_shared_words`, seeded by
    (seed, example_id)) and `best` keeps the copy with the lower loss per masked *word*
    (`beam_jobs.score.loss_per_word`: a word's loss is the sum of its pieces' cross-entropies).

Every copy is scored by its teacher with `teacher_scoring.teachers.scoring.make_score_fn` (what the
job's RunInference handler calls). Reported, per way: the share of examples whose best teacher
is the same under both seeds (a choice that reflects the text, not the draw, is stable), each
teacher's share of wins, and a 95% bootstrap interval of the agreement. Examples where a copy
has no masked piece under a seed are left out (the job drops such copies).

    .venv/bin/python experiments/best_copy_stability.py --language en \
        --teacher en_cased=/tmp/teachers/en_cased --teacher en_uncased=/tmp/teachers/en_uncased \
        --corpus ../shared/corpora/dev/en.txt --seq_length 64 --max_predictions_per_seq 10

Use trained teachers (e.g. `python -m student.pretrain_teacher`): with random ones the
losses say nothing about the text.
"""

from __future__ import annotations

import collections
import sys

from absl import app, flags
import numpy as np

FLAGS = flags.FLAGS
flags.DEFINE_string("language", "en", "Language code.")
flags.DEFINE_multi_string("teacher", None, "NAME=FOLDER, twice (the language's two teachers).")
flags.DEFINE_multi_string("corpus", None, "Corpus file glob(s).")
flags.DEFINE_enum("document_format", "line", ["line", "blank_line"], "Corpus format.")
flags.DEFINE_integer("max_documents", 4000, "Documents read (0: all).")
flags.DEFINE_integer("seq_length", 64, "S (at most the teachers' max positions).")
flags.DEFINE_integer("max_predictions_per_seq", 10, "P.")
flags.DEFINE_list("seeds", ["1", "2"], "The two masking seeds.")
flags.DEFINE_integer("batch_size", 64, "Scoring batch size.")
flags.DEFINE_integer("bootstrap", 1000, "Bootstrap resamples for the interval.")


def score_copies(examples, score_fns, batch_size):
    """{(example_id, teacher): (teacher_loss, masked pieces, masked words)} for every copy."""
    from teacher_scoring.teachers import scoring
    by_teacher = collections.defaultdict(list)
    for example in examples:
        if example.num_predictions:
            by_teacher[example.teacher].append(example)
    out = {}
    for teacher, copies in by_teacher.items():
        for start in range(0, len(copies), batch_size):
            rows = copies[start:start + batch_size]
            padded = rows + [rows[-1]] * (batch_size - len(rows))
            batch = {f: np.stack([np.asarray(getattr(e, f)) for e in padded]).astype(
                np.float32 if f == "masked_lm_weights" else np.int32) for f in scoring.INPUTS}
            losses = score_fns[teacher](batch)["teacher_loss"].numpy()
            for example, loss in zip(rows, losses):
                out[(example.example_id, teacher)] = (float(loss), example.num_predictions,
                                                      example.num_masked_words)
    return out


def best_teachers(scores, teachers, per_word):
    """example_id → the teacher `best` keeps (examples with every teacher's copy only)."""
    from beam_jobs.score import loss_per_word

    ids = {example_id for example_id, _ in scores}
    out = {}
    for example_id in sorted(ids):
        if not all((example_id, t) in scores for t in teachers):
            continue
        def key(teacher):
            loss, pieces, words = scores[(example_id, teacher)]
            value = loss_per_word(loss, pieces, words) if per_word else loss
            return (value, teacher)
        out[example_id] = min(teachers, key=key)
    return out


def main(argv):
    del argv
    from teacher_scoring.examples import create_examples
    from teacher_scoring.teachers import scoring
    from teacher_scoring.teachers.loaders import load_teacher
    from teacher_scoring.examples.masking import MaskingConfig

    if not FLAGS.teacher or len(FLAGS.teacher) != 2 or not FLAGS.corpus:
        sys.exit("error: give --teacher NAME=FOLDER twice and --corpus")
    teachers = {}
    for spec in FLAGS.teacher:
        name, _, folder = spec.partition("=")
        teachers[name] = load_teacher(folder, name=name, languages=[FLAGS.language])
    names = sorted(teachers)
    tokenizers = {name: teachers[name].tokenizer() for name in names}
    score_fns = {name: scoring.make_score_fn(teachers[name], jit_compile=True) for name in names}
    documents = list(create_examples.read_documents(FLAGS.corpus, FLAGS.document_format))
    if FLAGS.max_documents:
        documents = documents[:FLAGS.max_documents]
    described = ", ".join(f"{n} ({t.vocab_size} tokens, "
                          f"{'uncased' if t.lower_case else 'cased'})"
                          for n, t in teachers.items())
    print(f"{len(documents)} documents; teachers {described}; S {FLAGS.seq_length}, "
          f"P {FLAGS.max_predictions_per_seq}, seeds {FLAGS.seeds}")
    rng = np.random.default_rng(0)
    for title, shared in (("before: independent masks, loss per piece", False),
                          ("after: shared masks, loss per word", True)):
        picks = []
        pieces, copies = collections.Counter(), collections.Counter()
        for seed in FLAGS.seeds:
            config = MaskingConfig(FLAGS.seq_length, FLAGS.max_predictions_per_seq,
                                   whole_word_masking=True, seed=int(seed))
            examples = list(create_examples.create_examples(
                documents, FLAGS.language, tokenizers, config, shared_masks=shared))
            for example in examples:
                pieces[example.teacher] += example.num_predictions
                copies[example.teacher] += 1
            picks.append(best_teachers(score_copies(examples, score_fns, FLAGS.batch_size),
                                       names, per_word=shared))
        common = sorted(set(picks[0]) & set(picks[1]))
        same = np.array([picks[0][e] == picks[1][e] for e in common], float)
        boot = [same[rng.integers(0, len(same), len(same))].mean()
                for _ in range(FLAGS.bootstrap)]
        wins = collections.Counter(picks[0][e] for e in common)
        print(f"{title}: {len(common)} examples; same teacher under both seeds "
              f"{same.mean():.3f} (95% bootstrap interval {np.percentile(boot, 2.5):.3f}-"
              f"{np.percentile(boot, 97.5):.3f}); wins under seed {FLAGS.seeds[0]}: "
              + ", ".join(f"{n} {wins[n] / len(common):.3f}" for n in names)
              + "; masked pieces per copy: "
              + ", ".join(f"{n} {pieces[n] / copies[n]:.2f}" for n in names))


if __name__ == "__main__":
    flags.mark_flags_as_required(["teacher", "corpus"])
    app.run(main)
