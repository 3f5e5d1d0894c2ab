"""Writers for the teacher folder formats (the inverse of `teacher_scoring.teachers.loaders`).

From a tf-models-official BERT (a `BertEncoder` or `BertEncoderV2` and its `layers.MaskedLM`
head, e.g. the `encoder_network` and `masked_lm` of a `BertPretrainerV2`):

  export_google_bert_checkpoint  (a) bert_config.json + bert_model.ckpt.* (Google variable names)
  export_hf_folder               (b) config.json + model.safetensors (BertForMaskedLM names)
  export_tfm_checkpoint          (c) encoder_config.yaml + tf.train.Checkpoint(encoder, masked_lm)

From any Teacher (any architecture):

  export_saved_model             (d) SavedModel with the `mlm` signature

From a format (b) folder:

  export_hf_folder_float16       the same folder with float16 weights (half the bytes; what the
                                 project ships in data/teachers/)

Each writes vocab.txt and the casing / languages (teacher.json; tokenizer_config.json too for
Hugging Face), so `load_teacher(output_dir)` gives back the same teacher. `export_teacher`
converts a loaded teacher to any format.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Sequence

import numpy as np
import safetensors.numpy
import tensorflow as tf
import yaml
from official.nlp.modeling import networks

from teacher_scoring.teachers import teacher as teacher_lib
from teacher_scoring.teachers.loaders import bert_mlm, google_bert_checkpoint, hf_folder, saved_model
from teacher_scoring.teachers.loaders import tfm_checkpoint
from teacher_scoring.teachers.teacher import Teacher, TeacherMetadata


class ExportError(ValueError):
    """A model cannot be written in the requested format."""


def _prepare(output_dir: str, overwrite: bool) -> None:
    if tf.io.gfile.exists(output_dir):
        if tf.io.gfile.listdir(output_dir) and not overwrite:
            raise ExportError(f"{output_dir}: exists and is not empty (pass overwrite=True)")
    tf.io.gfile.makedirs(output_dir)


def _write_text(path: str, text: str) -> None:
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(text)


def _write_vocab(path: str, vocab: Sequence[str]) -> None:
    _write_text(path, "".join(token + "\n" for token in vocab))


def _write_json(path: str, data) -> None:
    _write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _bert_config(encoder, masked_lm, vocab: Sequence[str]) -> bert_mlm.BertMLMConfig:
    try:
        config = bert_mlm.config_from_model(encoder, masked_lm)
    except ValueError as error:
        raise ExportError(str(error)) from error
    if config.vocab_size != len(vocab):
        raise ExportError(f"the vocabulary has {len(vocab)} tokens but the embedding table has "
                          f"{config.vocab_size} rows")
    return config


def _metadata(lower_case: bool, languages: Sequence[str], name: str | None,
              max_sequence_length: int | None = None) -> TeacherMetadata:
    if not isinstance(lower_case, bool):
        raise ExportError(f"lower_case must be a bool, got {lower_case!r}")
    try:
        return TeacherMetadata.from_dict(
            {k: v for k, v in dict(name=name, lower_case=lower_case, languages=list(languages),
                                   max_sequence_length=max_sequence_length).items()
             if v is not None}, "teacher metadata")
    except teacher_lib.TeacherError as error:
        raise ExportError(str(error)) from error


def export_google_bert_checkpoint(encoder, masked_lm, vocab: Sequence[str], output_dir: str, *,
                                  lower_case: bool, languages: Sequence[str] = (),
                                  name: str | None = None, overwrite: bool = False) -> str:
    """Writes format (a): the original Google-BERT release layout.

    Variables get the names of google-research/bert (`bert/embeddings/word_embeddings`,
    `bert/encoder/layer_N/attention/self/query/kernel` [H, H], ...,
    `cls/predictions/output_bias`); attention kernels are reshaped from tf-models' EinsumDense
    layouts to the 2-D Dense layouts. The casing goes to teacher.json (Google folders have no
    casing file). An exact-erf-GELU model gets hidden_act "gelu_exact" (original BERT's "gelu"
    is the tanh approximation).

    Returns:
      output_dir.
    """
    config = _bert_config(encoder, masked_lm, vocab)
    metadata = _metadata(lower_case, languages, name)
    _prepare(output_dir, overwrite)
    weights = bert_mlm.read_google_weights(encoder, masked_lm, config)
    names = list(weights)
    prefix = os.path.join(output_dir, google_bert_checkpoint.DEFAULT_PREFIX)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(weights[n]) for n in names])
    _write_json(os.path.join(output_dir, google_bert_checkpoint.CONFIG_FILE),
                google_bert_checkpoint.config_to_dict(config))
    _write_vocab(os.path.join(output_dir, "vocab.txt"), vocab)
    teacher_lib.write_teacher_json(os.path.join(output_dir, teacher_lib.TEACHER_JSON), metadata)
    return output_dir


def write_hf_model(encoder, masked_lm, config: bert_mlm.BertMLMConfig, output_dir: str, *,
                   with_pooler: bool = True, config_overrides: dict | None = None) -> None:
    """Writes config.json + model.safetensors (BertForMaskedLM names) into an existing folder.

    Args:
      encoder, masked_lm: a tf-models BERT encoder and its MaskedLM head.
      config: their `bert_mlm.config_from_model` config.
      output_dir: the folder (created by the caller).
      with_pooler: also write `bert.pooler.*` (BertForMaskedLM has no pooler, so transformers
        reports these two weights as unexpected; format (b) keeps them for round trips).
      config_overrides: config.json fields to set over `hf_folder.config_to_dict(config)`.
    """
    tensors = {}
    for google, value in bert_mlm.read_google_weights(encoder, masked_lm, config).items():
        if not with_pooler and google in bert_mlm.POOLER_NAMES:
            continue
        key, transpose = hf_folder.google_to_hf(google)
        tensors[key] = np.ascontiguousarray(value.T if transpose else value)
    safetensors.numpy.save_file(tensors, os.path.join(output_dir, hf_folder.WEIGHTS_FILE),
                                metadata={"format": "pt"})
    _write_json(os.path.join(output_dir, hf_folder.CONFIG_FILE),
                {**hf_folder.config_to_dict(config), **(config_overrides or {})})


def export_hf_folder(encoder, masked_lm, vocab: Sequence[str], output_dir: str, *,
                     lower_case: bool, languages: Sequence[str] = (), name: str | None = None,
                     overwrite: bool = False) -> str:
    """Writes format (b): a Hugging Face BertForMaskedLM folder (safetensors, tied decoder).

    `transformers.BertForMaskedLM.from_pretrained(output_dir)` and `BertTokenizer` load it.

    Returns:
      output_dir.
    """
    config = _bert_config(encoder, masked_lm, vocab)
    metadata = _metadata(lower_case, languages, name)
    _prepare(output_dir, overwrite)
    write_hf_model(encoder, masked_lm, config, output_dir)
    _write_json(os.path.join(output_dir, hf_folder.TOKENIZER_CONFIG_FILE), {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": lower_case,
        "strip_accents": None,
        "tokenize_chinese_chars": True,
        "model_max_length": config.max_position_embeddings,
    })
    _write_vocab(os.path.join(output_dir, "vocab.txt"), vocab)
    teacher_lib.write_teacher_json(os.path.join(output_dir, teacher_lib.TEACHER_JSON), metadata)
    return output_dir


def export_hf_folder_float16(source_dir: str, output_dir: str, *,
                             overwrite: bool = False) -> str:
    """Copies a format (b) folder with its floating-point weights cast to float16.

    Every other file (vocab.txt, tokenizer_config.json, teacher.json) is copied unchanged;
    config.json gets `"torch_dtype": "float16"`. The loaders and `transformers` read F16
    safetensors (the loaders compute in float32 after the cast back).

    Raises:
      ExportError: source_dir has no model.safetensors / config.json, or output_dir is not
        empty and overwrite is False.
    """
    weights = os.path.join(source_dir, hf_folder.WEIGHTS_FILE)
    config_path = os.path.join(source_dir, hf_folder.CONFIG_FILE)
    for path in (weights, config_path):
        if not tf.io.gfile.exists(path):
            raise ExportError(f"{source_dir}: no {os.path.basename(path)} (not a format (b) "
                              "Hugging Face folder)")
    if os.path.abspath(source_dir) == os.path.abspath(output_dir):
        raise ExportError(f"{output_dir}: the float16 copy must go to another folder")
    _prepare(output_dir, overwrite)
    arrays = hf_folder.read_safetensors(weights)
    halved = {key: (value.astype(np.float16) if np.issubdtype(value.dtype, np.floating)
                    else value) for key, value in arrays.items()}
    safetensors.numpy.save_file(halved, os.path.join(output_dir, hf_folder.WEIGHTS_FILE),
                                metadata={"format": "pt"})
    with tf.io.gfile.GFile(config_path, "r") as f:
        config = json.load(f)
    _write_json(os.path.join(output_dir, hf_folder.CONFIG_FILE),
                {**config, "torch_dtype": "float16"})
    for name in tf.io.gfile.listdir(source_dir):
        if name in (hf_folder.WEIGHTS_FILE, hf_folder.CONFIG_FILE):
            continue
        source = os.path.join(source_dir, name)
        if not tf.io.gfile.isdir(source):
            tf.io.gfile.copy(source, os.path.join(output_dir, name), overwrite=True)
    return output_dir


def export_tfm_checkpoint(encoder, masked_lm, vocab: Sequence[str], output_dir: str, *,
                          lower_case: bool, languages: Sequence[str] = (),
                          name: str | None = None, overwrite: bool = False) -> str:
    """Writes format (c): encoder_config.yaml + tf.train.Checkpoint(encoder=, masked_lm=).

    The checkpoint has `BertPretrainerV2.checkpoint_items`' layout, so tf-models' pretraining
    and fine-tuning tasks can also initialise from it (`init_checkpoint`).

    Returns:
      output_dir.
    """
    config = _bert_config(encoder, masked_lm, vocab)
    if isinstance(encoder, networks.BertEncoderV2):
        encoder_type = "bert_v2"
    elif isinstance(encoder, networks.BertEncoder):
        encoder_type = "bert"
    else:
        raise ExportError(f"{type(encoder).__name__} is neither a BertEncoder nor a "
                          "BertEncoderV2")
    metadata = _metadata(lower_case, languages, name)
    _prepare(output_dir, overwrite)
    tf.train.Checkpoint(encoder=encoder, masked_lm=masked_lm).write(
        os.path.join(output_dir, "ckpt"))
    _write_text(os.path.join(output_dir, tfm_checkpoint.CONFIG_FILES[0]),
                yaml.safe_dump(tfm_checkpoint.encoder_config_dict(config, encoder_type),
                               sort_keys=True))
    _write_vocab(os.path.join(output_dir, "vocab.txt"), vocab)
    teacher_lib.write_teacher_json(os.path.join(output_dir, teacher_lib.TEACHER_JSON), metadata)
    return output_dir


class MLMExportModule(tf.Module):
    """The module saved by `export_saved_model`: the `mlm` signature around a teacher.

    Only the variables the signature reads are tracked (whatever object holds them: a Keras
    model, a tf.Module, a loaded SavedModel), not the model object itself.
    """

    def __init__(self, teacher: Teacher, assets: Sequence[str]):
        super().__init__(name="mergedistill_teacher")
        self._mlm_logits = teacher.mlm_logits
        self.assets = [tf.saved_model.Asset(path) for path in assets]
        traced = self.mlm.get_concrete_function()
        self.model_variables = list(traced.variables)

    @tf.function(input_signature=[
        tf.TensorSpec([None, None], tf.int32, name="input_word_ids"),
        tf.TensorSpec([None, None], tf.int32, name="input_mask"),
        tf.TensorSpec([None, None], tf.int32, name="input_type_ids"),
        tf.TensorSpec([None, None], tf.int32, name="masked_lm_positions"),
    ])
    def mlm(self, input_word_ids, input_mask, input_type_ids, masked_lm_positions):
        """logits float32 [batch, num_predictions, vocab_size]."""
        logits = self._mlm_logits(input_word_ids, input_mask, input_type_ids,
                                  masked_lm_positions)
        return {saved_model.OUTPUT: logits}


def export_saved_model(teacher: Teacher, output_dir: str, *, overwrite: bool = False) -> str:
    """Writes format (d): a SavedModel with the `mlm` signature, vocab and teacher.json assets.

    Works for any Teacher: the signature is traced from `teacher.mlm_logits` and the variables
    it reads are saved with it.

    Returns:
      output_dir.
    """
    _prepare(output_dir, overwrite)
    metadata = TeacherMetadata(name=teacher.name, lower_case=teacher.lower_case,
                               languages=teacher.languages,
                               max_sequence_length=teacher.max_sequence_length)
    staging = tempfile.mkdtemp(prefix="teacher_assets_")
    try:
        vocab_path = os.path.join(staging, "vocab.txt")
        metadata_path = os.path.join(staging, teacher_lib.TEACHER_JSON)
        _write_vocab(vocab_path, teacher.vocab)
        teacher_lib.write_teacher_json(metadata_path, metadata)
        module = MLMExportModule(teacher, [vocab_path, metadata_path])
        tf.saved_model.save(module, output_dir,
                            signatures={saved_model.SIGNATURE: module.mlm.get_concrete_function()})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output_dir


def export_teacher(teacher: Teacher, output_dir: str, format: str, *,  # pylint: disable=redefined-builtin
                   overwrite: bool = False) -> str:
    """Writes a loaded teacher in `format` (one of teacher_scoring.teachers.loaders.FORMATS).

    The BERT formats (a)-(c) need a tf-models BERT behind the teacher (`teacher.model` with
    `encoder_network` and `masked_lm`, as the BERT loaders give); "saved_model" takes any.
    """
    if format == saved_model.FORMAT:
        return export_saved_model(teacher, output_dir, overwrite=overwrite)
    writers = {
        google_bert_checkpoint.FORMAT: export_google_bert_checkpoint,
        hf_folder.FORMAT: export_hf_folder,
        tfm_checkpoint.FORMAT: export_tfm_checkpoint,
    }
    if format not in writers:
        raise ExportError(f"unknown format {format!r}; known: {sorted(writers) + ['saved_model']}")
    model = teacher.model
    if not (hasattr(model, "encoder_network") and hasattr(model, "masked_lm")):
        raise ExportError(f"teacher {teacher.name!r} is not a tf-models BERT (its model has no "
                          f"encoder_network / masked_lm); only 'saved_model' can hold it")
    return writers[format](model.encoder_network, model.masked_lm, teacher.vocab, output_dir,
                           lower_case=teacher.lower_case, languages=teacher.languages,
                           name=teacher.name, overwrite=overwrite)
