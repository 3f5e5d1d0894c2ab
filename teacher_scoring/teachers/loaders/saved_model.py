"""Format (d): a TF SavedModel exposing an MLM signature.

    folder/
      saved_model.pb, variables/       the SavedModel
      assets/vocab.txt                 WordPiece vocabulary (or vocab.txt beside saved_model.pb)
      assets/teacher.json              {"lower_case": true|false, "languages": [...], "name": ...,
                                        "max_sequence_length": 512}; lower_case is required

The SavedModel must have a signature named `mlm`:

    inputs   input_word_ids       int32 [batch, seq_length]
             input_mask           int32 [batch, seq_length]
             input_type_ids       int32 [batch, seq_length]
             masked_lm_positions  int32 [batch, num_predictions]
    outputs  logits               float32 (or float16/bfloat16) [batch, num_predictions, vocab_size]

`teacher_scoring.teachers.export.export_saved_model` writes this format from any Teacher. Any model can
be wrapped this way (the teacher's architecture does not matter), which is how teachers that are
not BERTs enter the pipeline.
"""

from __future__ import annotations

import os
from typing import Sequence

import tensorflow as tf

from teacher_scoring.teachers import teacher as teacher_lib
from teacher_scoring.teachers.loaders import common
from teacher_scoring.teachers.loaders.bert_mlm import LoaderError

FORMAT = "saved_model"
SIGNATURE = "mlm"
INPUTS = ("input_word_ids", "input_mask", "input_type_ids", "masked_lm_positions")
OUTPUT = "logits"
LAYOUT = "saved_model.pb, variables/, assets/vocab.txt and assets/teacher.json"


def is_folder(path: str) -> bool:
    """Whether `path` has this format's marker file."""
    return any(tf.io.gfile.exists(os.path.join(path, n))
               for n in ("saved_model.pb", "saved_model.pbtxt"))


def _find(path: str, name: str) -> str | None:
    for candidate in (os.path.join(path, "assets", name), os.path.join(path, name)):
        if tf.io.gfile.exists(candidate):
            return candidate
    return None


def check_signature(signature, where: str) -> int | None:
    """Checks the `mlm` signature's inputs and output; returns the static vocab size or None."""
    _, kwargs = signature.structured_input_signature
    names = sorted(kwargs)
    if names != sorted(INPUTS):
        raise LoaderError(f"{where}: signature '{SIGNATURE}' takes {names}; expected "
                          f"{sorted(INPUTS)}")
    for input_name, spec in kwargs.items():
        if spec.dtype != tf.int32 or spec.shape.rank not in (None, 2):
            raise LoaderError(f"{where}: signature '{SIGNATURE}' input {input_name} is "
                              f"{spec.dtype.name} {spec.shape}; expected int32 [batch, length]")
    outputs = signature.structured_outputs
    if not isinstance(outputs, dict) or OUTPUT not in outputs:
        raise LoaderError(f"{where}: signature '{SIGNATURE}' has no output '{OUTPUT}' "
                          f"(outputs: {sorted(outputs) if isinstance(outputs, dict) else outputs})")
    spec = outputs[OUTPUT]
    if not spec.dtype.is_floating or spec.shape.rank not in (None, 3):
        raise LoaderError(f"{where}: signature output '{OUTPUT}' is {spec.dtype.name} {spec.shape};"
                          " expected float [batch, num_predictions, vocab_size]")
    return spec.shape[-1] if spec.shape.rank == 3 else None


def load(path: str, name: str | None = None, languages: Sequence[str] = (),
         allow_random_mlm_head: bool = False) -> teacher_lib.Teacher:
    """Loads a SavedModel folder with an `mlm` signature as a Teacher.

    `allow_random_mlm_head` is accepted for a uniform loader interface; a SavedModel carries its
    head in the signature, so there is nothing to initialise.
    """
    del allow_random_mlm_head
    common.check_folder(path)
    if not is_folder(path):
        raise LoaderError(f"{os.path.join(path, 'saved_model.pb')}: missing (a {FORMAT} folder "
                          f"holds {LAYOUT})")
    vocab_path = _find(path, common.VOCAB_TXT)
    if vocab_path is None:
        raise LoaderError(f"{os.path.join(path, 'assets', common.VOCAB_TXT)}: missing (a {FORMAT}"
                          f" folder holds {LAYOUT})")
    metadata_path = _find(path, teacher_lib.TEACHER_JSON)
    if metadata_path is None:
        raise LoaderError(f"{os.path.join(path, 'assets', teacher_lib.TEACHER_JSON)}: missing "
                          f"(a {FORMAT} folder holds {LAYOUT}; it gives the casing)")
    vocab = common.load_vocab(vocab_path)
    metadata = common.load_metadata(metadata_path)
    if metadata.lower_case is None:
        raise LoaderError(f"{metadata_path}: 'lower_case' is required")
    try:
        loaded = tf.saved_model.load(path)
    except (tf.errors.OpError, OSError, ValueError) as error:
        raise LoaderError(f"{path}: cannot load the SavedModel ({error})") from error
    if SIGNATURE not in loaded.signatures:
        raise LoaderError(f"{path}: no signature '{SIGNATURE}' (signatures: "
                          f"{sorted(loaded.signatures)})")
    signature = loaded.signatures[SIGNATURE]
    vocab_size = check_signature(signature, path)
    if vocab_size is None:  # dynamic: probe once with a tiny input
        probe = tf.zeros([1, 2], tf.int32)
        vocab_size = int(signature(input_word_ids=probe, input_mask=tf.ones_like(probe),
                                   input_type_ids=probe, masked_lm_positions=probe)[OUTPUT]
                         .shape[-1])
    if vocab_size != len(vocab):
        raise LoaderError(f"{path}: {vocab_path} has {len(vocab)} tokens but signature "
                          f"'{SIGNATURE}' returns {vocab_size} logits per position")

    def mlm_fn(input_word_ids, input_mask, input_type_ids, masked_lm_positions):
        return signature(input_word_ids=input_word_ids, input_mask=input_mask,
                         input_type_ids=input_type_ids,
                         masked_lm_positions=masked_lm_positions)[OUTPUT]

    return common.make_teacher(path, FORMAT, vocab, metadata.lower_case, metadata, name,
                               languages, mlm_fn,
                               max_sequence_length=metadata.max_sequence_length, model=loaded)
