"""Teacher loaders: one module a folder format, one entry point.

    teacher = load_teacher("/models/multi_cased_L-12_H-768_A-12", languages=["en", "hi"])

Formats (see docs/teachers.md for the folder layouts):

  google_bert_checkpoint  (a) bert_config.json + bert_model.ckpt.* + vocab.txt
  hf_folder               (b) config.json + model.safetensors + vocab.txt (+ tokenizer_config.json)
  tfm_checkpoint          (c) encoder_config.yaml|json + tf.train.Checkpoint + vocab.txt + teacher.json
  saved_model             (d) saved_model.pb with an `mlm` signature + assets/vocab.txt + assets/teacher.json

`format="auto"` picks the format from the marker files (the first file of each line above).
Every loader checks the whole folder (files present, config consistent with the weights' shapes,
vocabulary size equal to the embedding table, MLM head present) before building anything, and
raises `LoaderError` naming the path and the problem.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from teacher_scoring.teachers.loaders import google_bert_checkpoint, hf_folder, saved_model, tfm_checkpoint
from teacher_scoring.teachers.loaders.bert_mlm import LoaderError
from teacher_scoring.teachers.loaders.common import check_folder
from teacher_scoring.teachers.teacher import Teacher

LOADERS = {
    google_bert_checkpoint.FORMAT: google_bert_checkpoint,
    hf_folder.FORMAT: hf_folder,
    tfm_checkpoint.FORMAT: tfm_checkpoint,
    saved_model.FORMAT: saved_model,
}
FORMATS = tuple(LOADERS)
_MARKERS = {
    google_bert_checkpoint.FORMAT: google_bert_checkpoint.CONFIG_FILE,
    hf_folder.FORMAT: hf_folder.CONFIG_FILE,
    tfm_checkpoint.FORMAT: "/".join(tfm_checkpoint.CONFIG_FILES),
    saved_model.FORMAT: "saved_model.pb",
}

__all__ = ["FORMATS", "LoaderError", "detect_format", "load_teacher"]


def detect_format(path: str) -> str:
    """The format of a teacher folder, from its marker files.

    Raises:
      LoaderError: the folder does not exist, has no marker, or markers of several formats.
    """
    check_folder(path)
    found = [name for name, module in LOADERS.items() if module.is_folder(path)]
    if not found:
        try:
            files = sorted(tf.io.gfile.listdir(path))
        except tf.errors.OpError:
            files = []
        markers = ", ".join(f"{marker} ({name})" for name, marker in _MARKERS.items())
        raise LoaderError(f"{path}: unknown teacher format: none of the marker files {markers} "
                          f"is there (files: {files[:20]})")
    if len(found) > 1:
        raise LoaderError(f"{path}: ambiguous teacher format: markers of {found}; pass format=")
    return found[0]


def load_teacher(path: str, format: str = "auto", name: str | None = None,  # pylint: disable=redefined-builtin
                 languages: Sequence[str] = (), allow_random_mlm_head: bool = False) -> Teacher:
    """Loads a teacher folder.

    Args:
      path: the teacher folder.
      format: one of FORMATS, or "auto" to detect it from the folder's files.
      name: the teacher's name; default: teacher.json's "name", else the folder's base name.
      languages: the languages it serves; default: teacher.json's "languages".
      allow_random_mlm_head: load an encoder that has no MLM head with a freshly initialised one
        (tests only: such a teacher's predictions are random).

    Returns:
      The Teacher.

    Raises:
      LoaderError: naming the path and the problem, before any model is built.
    """
    if format == "auto":
        format = detect_format(path)
    elif format not in LOADERS:
        raise LoaderError(f"{path}: unknown format {format!r}; known: {list(FORMATS)} or 'auto'")
    return LOADERS[format].load(path, name=name, languages=languages,
                                allow_random_mlm_head=allow_random_mlm_head)
