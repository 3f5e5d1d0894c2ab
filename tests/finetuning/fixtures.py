"""Builders the fine-tuning tests share: bundled UD slices, written data files, a tiny teacher
folder and a tiny student export (with its tokenizer)."""

from __future__ import annotations

import os
import pathlib

import numpy as np

from tests.conftest import REPO_ROOT, trained_vocab

DOWNSTREAM = REPO_ROOT / "data" / "downstream"
EWT = DOWNSTREAM / "en_ewt-ud-dev.200.conllu"
BOUN = DOWNSTREAM / "tr_boun-ud-dev.200.conllu"
TINY_STUDENT_CONFIG = REPO_ROOT / "configs" / "student" / "tiny.yaml"

# Tiny BERT sizes (2 layers x 32 hidden), positions for S up to 128.
TINY = dict(hidden_size=32, num_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=128)


def conllu_blocks(path) -> list[str]:
    """The sentence blocks of a CoNLL-U file (comments and token lines, no blank lines)."""
    text = pathlib.Path(path).read_text(encoding="utf-8")
    return [b for b in text.strip("\n").split("\n\n") if b.strip()]


def write_conllu(path: pathlib.Path, blocks: list[str]) -> str:
    path.write_text("\n\n".join(blocks) + "\n\n", encoding="utf-8")
    return str(path)


def split_bundled(path: pathlib.Path, folder: pathlib.Path, dev_sentences: int = 50
                  ) -> tuple[str, str]:
    """Writes the bundled slice as train (all but the first `dev_sentences`) and dev (those)."""
    blocks = conllu_blocks(path)
    treebank = path.name.split("-")[0]  # en_ewt
    return (write_conllu(folder / f"{treebank}-train.conllu", blocks[dev_sentences:]),
            write_conllu(folder / f"{treebank}-dev.conllu", blocks[:dev_sentences]))


def write_text(path: pathlib.Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def write_token_label(path: pathlib.Path, sentences: list[list[tuple[str, str]]]) -> str:
    """Writes token<TAB>label sentences, a blank line between them."""
    text = "\n\n".join("\n".join(f"{t}\t{l}" for t, l in s) for s in sentences) + "\n"
    return write_text(path, text)


def random_bert_mlm(vocab_size: int, seed: int = 0, hidden_act: str = "gelu"):
    """A tiny tf-models BertPretrainerV2 (random weights, every variable non-trivial)."""
    from teacher_scoring.teachers.loaders import bert_mlm

    config = bert_mlm.BertMLMConfig(vocab_size=vocab_size, hidden_act=hidden_act, **TINY)
    model = bert_mlm.build_bert_mlm(config)
    rng = np.random.default_rng(seed)
    for var in model.variables:
        if "gamma" in var.name:
            var.assign((1.0 + rng.normal(0, 0.05, var.shape)).astype(np.float32))
        else:
            var.assign(rng.normal(0, 0.05, var.shape).astype(np.float32))
    return model


def make_teacher(folder: pathlib.Path, language: str, format_name: str = "tfm_checkpoint",
                 vocab_size: int = 1200, lower_case: bool = True, seed: int = 0,
                 hidden_act: str = "gelu") -> str:
    """A tiny random teacher folder in `format_name` with a WordPiece vocab trained on the
    bundled demo text of `language` (`hidden_act`: a bert_mlm activation name)."""
    from teacher_scoring.teachers import export
    vocab = trained_vocab(language, vocab_size, lower_case=lower_case)
    model = random_bert_mlm(len(vocab), seed, hidden_act)
    writers = {"tfm_checkpoint": export.export_tfm_checkpoint,
               "google_bert_checkpoint": export.export_google_bert_checkpoint,
               "hf_folder": export.export_hf_folder}
    writers[format_name](model.encoder_network, model.masked_lm, vocab, str(folder),
                         lower_case=lower_case, languages=[language], name=f"{language}_tiny")
    return str(folder)


def make_student_export(folder: pathlib.Path, teachers: dict[str, tuple[str, bool]],
                        seed: int = 0) -> tuple[str, object]:
    """A tiny student export (configs/student/tiny.yaml sizes) over the union of the teachers'
    vocabularies, with its tokenizer.

    Args:
      folder: the model_dir; the export goes to folder/export.
      teachers: teacher name -> (language, lower_case); vocabularies trained on demo text.

    Returns:
      (export_dir, the student's BertPretrainerV2).
    """
    import tf_keras

    from student import config as config_lib
    from student import export as export_lib
    from student import model as model_lib
    from student import tokenizer as tokenizer_lib
    from vocab.union import StudentVocab

    vocabs = {name: trained_vocab(language, 600, lower_case=lower_case)
              for name, (language, lower_case) in teachers.items()}
    student_vocab = StudentVocab.build(vocabs)
    vocab_dir = str(folder / "vocab")
    student_vocab.save(vocab_dir)
    config = config_lib.load_config(
        str(TINY_STUDENT_CONFIG),
        params_override=f"model.encoder.bert_v2.vocab_size={len(student_vocab.tokens)},"
                        "model.encoder.bert_v2.max_position_embeddings=128")
    tf_keras.utils.set_random_seed(seed)
    pretrainer = model_lib.build_pretrainer(config.model)
    tokenizer = tokenizer_lib.StudentTokenizer.build(vocab_dir, teachers={
        name: tokenizer_lib.TeacherSpec(name=name, lower_case=lower_case,
                                        examples={language: 10})
        for name, (language, lower_case) in teachers.items()})
    export_dir = str(folder / "export")
    export_lib.export(pretrainer, config, os.path.join(vocab_dir, "vocab.txt"), export_dir,
                      step=1, tokenizer=tokenizer)
    return export_dir, pretrainer
