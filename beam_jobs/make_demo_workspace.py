r"""Creates the workspace configs/scoring/demo.yaml expects: two small teachers, a student vocab.

    python -m beam_jobs.make_demo_workspace --workspace workspace
    python -m beam_jobs.score_corpora --config configs/scoring/demo.yaml

  workspace/teachers/demo_en     English teacher, cased, Hugging Face folder
  workspace/teachers/demo_ende   English + German teacher, uncased, Google-BERT checkpoint
  workspace/vocab                the student vocab (union of both, python -m vocab.build_union)

The vocabularies are real WordPiece vocabularies trained on the bundled demo corpora; the
models are small BERTs with RANDOM weights (the scoring job only needs working checkpoints;
their predictions are meaningless). For meaningful teachers, pretrain them or use released
checkpoints, and point the config's `teachers` at them.
"""

from __future__ import annotations

import os
import pathlib

from absl import app, flags

FLAGS = flags.FLAGS
REPO = pathlib.Path(__file__).resolve().parents[1]

flags.DEFINE_string("workspace", "workspace", "Workspace folder to create.")
flags.DEFINE_integer("vocab_size", 4000, "WordPiece vocabulary size of each teacher.")
flags.DEFINE_integer("hidden_size", 64, "Teacher hidden size.")
flags.DEFINE_integer("num_layers", 2, "Teacher layers.")
flags.DEFINE_integer("max_position_embeddings", 128, "Longest sequence the teachers accept.")
flags.DEFINE_bool("overwrite", False, "Replace existing teacher and vocab folders.")

# name -> (languages, lower_case, format)
TEACHERS = {
    "demo_en": (("en",), False, "hf_folder"),
    "demo_ende": (("en", "de"), True, "google_bert_checkpoint"),
}


def _lines(language: str) -> list[str]:
    text = (REPO / "data" / "corpora" / "demo" / f"{language}.txt").read_text(encoding="utf-8")
    return [line for line in text.split("\n") if line.strip()]


def make_demo_workspace(workspace: str, vocab_size: int = 4000, hidden_size: int = 64,
                        num_layers: int = 2, max_position_embeddings: int = 128,
                        overwrite: bool = False) -> dict[str, str]:
    """Writes the demo teachers and student vocab under `workspace`; returns name → path."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from teacher_scoring.teachers import export  # pylint: disable=import-outside-toplevel
    from teacher_scoring.teachers.loaders import bert_mlm  # pylint: disable=import-outside-toplevel
    from vocab.train_wordpiece import train_wordpiece  # pylint: disable=import-outside-toplevel
    from vocab.union import StudentVocab  # pylint: disable=import-outside-toplevel

    writers = {"hf_folder": export.export_hf_folder,
               "google_bert_checkpoint": export.export_google_bert_checkpoint}
    paths, vocabs = {}, {}
    for seed, (name, (languages, lower_case, fmt)) in enumerate(TEACHERS.items()):
        lines = [line for language in languages for line in _lines(language)]
        vocab = train_wordpiece(lines, vocab_size, lower_case)
        tf.keras.utils.set_random_seed(seed)
        model = bert_mlm.build_bert_mlm(bert_mlm.BertMLMConfig(
            vocab_size=len(vocab), hidden_size=hidden_size, num_layers=num_layers,
            num_attention_heads=max(1, hidden_size // 32), intermediate_size=4 * hidden_size,
            max_position_embeddings=max_position_embeddings))
        path = os.path.join(workspace, "teachers", name)
        writers[fmt](model.encoder_network, model.masked_lm, vocab, path, lower_case=lower_case,
                     languages=list(languages), name=name, overwrite=overwrite)
        paths[name], vocabs[name] = path, vocab
    StudentVocab.build(vocabs, sources={n: os.path.join(p, "vocab.txt") for n, p in paths.items()}
                       ).save(os.path.join(workspace, "vocab"), overwrite=overwrite)
    return paths


def main(argv):
    del argv
    paths = make_demo_workspace(FLAGS.workspace, FLAGS.vocab_size, FLAGS.hidden_size,
                                FLAGS.num_layers, FLAGS.max_position_embeddings, FLAGS.overwrite)
    for name, path in paths.items():
        print(f"teacher {name}: {path}")
    print(f"student vocab: {os.path.join(FLAGS.workspace, 'vocab')}")


if __name__ == "__main__":
    app.run(main)
