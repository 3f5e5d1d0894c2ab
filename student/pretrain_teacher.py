r"""Pretrains a small BERT MLM teacher for one language, from text and its own WordPiece vocab.

This is how the demo and the experiments get real teachers with really different vocabularies.
Nothing here is new machinery; it chains what the pipeline already has:

  1. vocabulary   vocab.train_wordpiece on the corpus (or --vocab, an existing vocab.txt);
  2. examples     teacher_scoring.examples.create_examples: plain-MLM shards in the teacher's own ids;
  3. training     the student trainer with lambda = 0 (plain MLM: no teacher outputs);
  4. export       teacher_scoring.teachers.export in format (a) Google-BERT or (b) Hugging Face;
  5. check        the folder is loaded back with teacher_scoring.teachers.loaders.load_teacher and its
                  MLM logits must equal the trained model's on a batch of its own examples.

  python -m student.pretrain_teacher --name bert_en --language en \
      --input 'data/corpora/demo/en.txt' --vocab_size 6000 --lower_case \
      --config_file configs/teacher/demo.yaml --work_dir /tmp/teachers/work/bert_en \
      --output_dir /tmp/teachers/bert_en --format hf_folder

The training config is a student config (configs/teacher/*.yaml); its vocab size is taken from
the vocab, its loss is forced to lambda = 0. Rerunning with the same --work_dir resumes the
training from its latest checkpoint (the student trainer's resume); the vocab and the example
shards of an earlier run are reused when they are there and complete.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from absl import app, flags, logging
import numpy as np
import tensorflow as tf

from teacher_scoring import cli_logging
from teacher_scoring.examples import create_examples as create_examples_lib
from teacher_scoring.examples import documents as documents_lib
from teacher_scoring.teachers import export as export_lib
from teacher_scoring.teachers import loaders
from teacher_scoring.records import manifest as manifest_lib
from teacher_scoring.records import record_schema
from teacher_scoring.examples.masking import MaskingConfig
from teacher_scoring.examples.tokenization import read_vocab

EXPORT_FORMATS = ("hf_folder", "google_bert_checkpoint")
PLAIN_MLM_OVERRIDE = {"loss": {"lambda_schedule": "constant", "lambda_start": 0.0,
                               "lambda_end": 0.0}}


@dataclasses.dataclass
class PretrainResult:
    """Where a pretraining run put its artifacts, and what it measured."""

    teacher_dir: str
    vocab_path: str
    shards_dir: str
    model_dir: str
    vocab_size: int
    examples: int
    steps: int
    first_loss: float  # MLM loss of the first step
    last_loss: float   # mean MLM loss of the last 10 steps
    reload_max_abs_diff: float


def _export_writer(fmt: str):
    if fmt == "hf_folder":
        return export_lib.export_hf_folder
    if fmt == "google_bert_checkpoint":
        return export_lib.export_google_bert_checkpoint
    raise ValueError(f"--format must be one of {EXPORT_FORMATS}, got {fmt!r}")


def _vocab(corpus: list[str], vocab_path: str, vocab_size: int, lower_case: bool,
           given_vocab: str | None) -> list[str]:
    from vocab import train_wordpiece  # pylint: disable=import-outside-toplevel

    if given_vocab:
        tokens = read_vocab(given_vocab)
        train_wordpiece.write_vocab(tokens, vocab_path)
        return tokens
    if tf.io.gfile.exists(vocab_path):
        logging.info("reusing the vocabulary at %s", vocab_path)
        return read_vocab(vocab_path)
    tokens = train_wordpiece.train_wordpiece(
        train_wordpiece.read_lines(corpus), vocab_size, lower_case)
    train_wordpiece.write_vocab(tokens, vocab_path)
    logging.info("trained a %d-token WordPiece vocabulary: %s", len(tokens), vocab_path)
    return tokens


def _examples(corpus: list[str], language: str, name: str, tokens: list[str], lower_case: bool,
              masking: MaskingConfig, shards_dir: str, num_shards: int,
              vocab_path: str, document_format: str = documents_lib.LINE
              ) -> manifest_lib.Manifest:
    if tf.io.gfile.exists(manifest_lib.manifest_path(shards_dir)):
        manifest = manifest_lib.read_manifest(shards_dir)
        manifest_lib.check_matches(
            manifest, manifest_lib.manifest_path(shards_dir),
            vocab_sha256=manifest_lib.sha256_of_tokens(tokens),
            seq_length=masking.seq_length,
            max_predictions_per_seq=masking.max_predictions_per_seq, seed=masking.seed)
        made_from = manifest.config.get("document_format", documents_lib.LINE)
        if made_from != document_format:
            raise ValueError(f"{manifest_lib.manifest_path(shards_dir)}: field "
                             f"'config.document_format' is {made_from!r} but this run reads "
                             f"{document_format!r}; use another --work_dir")
        logging.info("reusing the example shards at %s", shards_dir)
        return manifest
    # A folder without a manifest is an interrupted run: its shards are replaced.
    return create_examples_lib.write_shards(
        create_examples_lib.read_documents(corpus, document_format), language, name, tokens,
        lower_case, masking, shards_dir, num_shards, overwrite=True, vocab_path=vocab_path,
        extra_config={"document_format": document_format})


def _reload_difference(teacher_dir: str, pretrainer, shards_dir: str,
                       spec: record_schema.ShardSpec) -> float:
    """Max |logits(loaded folder) - logits(trained model)| on a batch of training examples."""
    teacher = loaders.load_teacher(teacher_dir)
    files = sorted(tf.io.gfile.glob(os.path.join(shards_dir, "*.tfrecord")))
    records = next(iter(tf.data.TFRecordDataset(files).batch(8)))
    batch = record_schema.parse_batch(records, spec, keep_strings=False)
    inputs = {name: batch[name] for name in (record_schema.INPUT_WORD_IDS,
                                             record_schema.INPUT_MASK,
                                             record_schema.INPUT_TYPE_IDS,
                                             record_schema.MASKED_LM_POSITIONS)}
    trained = pretrainer(inputs, training=False)["mlm_logits"].numpy()
    loaded = teacher.mlm_logits(**inputs).numpy()
    return float(np.max(np.abs(trained - loaded)))


def pretrain_teacher(*, name: str, language: str, corpus: list[str], work_dir: str,
                     output_dir: str, config_file: str | None, params_override=(),
                     lower_case: bool = False, vocab_size: int = 8000,
                     vocab: str | None = None, fmt: str = "hf_folder", num_shards: int = 4,
                     seed: int = 12345, whole_word_masking: bool = False,
                     overwrite: bool = False, reload_tolerance: float = 1e-4,
                     document_format: str = documents_lib.LINE) -> PretrainResult:
    """Runs the five steps of the module docstring; returns where everything went.

    Raises:
      FileExistsError: output_dir is not empty and overwrite is False (checked first).
      ValueError / config.ConfigError / manifest.ManifestError: bad arguments, naming them.
      RuntimeError: the exported folder does not reproduce the trained model's logits.
    """
    # Imported here: the student package is the trainer, this module only drives it.
    from student import config as config_lib  # pylint: disable=import-outside-toplevel
    from student import experiment  # pylint: disable=import-outside-toplevel

    writer = _export_writer(fmt)
    documents_lib.check_format(document_format)
    if tf.io.gfile.exists(output_dir) and tf.io.gfile.listdir(output_dir) and not overwrite:
        raise FileExistsError(f"{output_dir} is not empty; pass --overwrite to replace it")
    config = config_lib.load_config(config_file, list(params_override) + [PLAIN_MLM_OVERRIDE])
    masking = MaskingConfig(seq_length=config.data.seq_length,
                            max_predictions_per_seq=config.data.max_predictions_per_seq,
                            whole_word_masking=whole_word_masking, seed=seed)
    tf.io.gfile.makedirs(work_dir)
    vocab_path = os.path.join(work_dir, "vocab.txt")
    shards_dir = os.path.join(work_dir, "mlm_shards")
    model_dir = os.path.join(work_dir, "model")

    tokens = _vocab(corpus, vocab_path, vocab_size, lower_case, vocab)
    manifest = _examples(corpus, language, name, tokens, lower_case, masking, shards_dir,
                         num_shards, vocab_path, document_format)
    logging.info("%s: %d examples, %d masked tokens", name, manifest.languages[language].examples,
                 manifest.languages[language].masked_tokens)

    data = experiment.prepare_data(config, vocab_path, {language: shards_dir})
    trainer = experiment.build_trainer(config, data, model_dir)
    trainer.write_run_info({"teacher": name, "vocab": vocab_path,
                           "vocab_sha256": manifest_lib.sha256_of_file(vocab_path)})
    history = trainer.train()
    losses = history.metrics.get("mlm_loss", [])
    steps = int(trainer.global_step.numpy())

    pretrainer = trainer.model
    writer(pretrainer.encoder_network, pretrainer.masked_lm, tokens, output_dir,
           lower_case=lower_case, languages=[language], name=name, overwrite=overwrite)
    difference = _reload_difference(output_dir, pretrainer, shards_dir, manifest.shard_spec)
    if not difference <= reload_tolerance:
        raise RuntimeError(f"{output_dir}: the exported teacher's logits differ from the trained "
                           f"model's by {difference:.3g} (> {reload_tolerance})")
    result = PretrainResult(
        teacher_dir=output_dir, vocab_path=vocab_path, shards_dir=shards_dir,
        model_dir=model_dir, vocab_size=len(tokens),
        examples=manifest.languages[language].examples, steps=steps,
        first_loss=float(losses[0]) if len(losses) else float("nan"),
        last_loss=float(np.mean(losses[-10:])) if len(losses) else float("nan"),
        reload_max_abs_diff=difference)
    logging.info("teacher %s ready: %s", name, result)
    return result


FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("name", None, "Teacher name (a safe file name, e.g. bert_en).")
    flags.DEFINE_string("language", None, "The language the teacher serves (ISO code).")
    flags.DEFINE_multi_string("input", None, "Corpus file glob(s) (see --document_format).")
    flags.DEFINE_enum("document_format", documents_lib.LINE, documents_lib.DOCUMENT_FORMATS,
                      "line: every line is a document; blank_line: documents are separated by "
                      "blank lines (BERT's format), and a document's lines are packed together.")
    flags.DEFINE_string("vocab", None, "Use this vocab.txt instead of training one.")
    flags.DEFINE_integer("vocab_size", 8000, "Size of the WordPiece vocabulary to train.")
    flags.DEFINE_bool("lower_case", False, "Uncased teacher (lower-case, strip accents).")
    flags.DEFINE_string("config_file", "configs/teacher/demo.yaml",
                        "Training config (a student config; lambda is forced to 0).")
    flags.DEFINE_multi_string("params_override", [], "Config overrides, e.g. train.steps=100.")
    flags.DEFINE_string("work_dir", None, "Vocab, example shards and checkpoints go here.")
    flags.DEFINE_string("output_dir", None, "The teacher folder to write.")
    flags.DEFINE_enum("format", "hf_folder", EXPORT_FORMATS, "hf_folder: Hugging Face folder "
                      "(b); google_bert_checkpoint: Google-BERT TF checkpoint (a).")
    flags.DEFINE_integer("num_shards", 4, "Example shards to write.")
    flags.DEFINE_integer("seed", 12345, "Masking seed.")
    flags.DEFINE_bool("whole_word_masking", False, "Mask whole words.")
    flags.DEFINE_bool("overwrite", False, "Replace a non-empty --output_dir.")
    flags.mark_flags_as_required(["name", "language", "input", "work_dir", "output_dir"])


def main(argv):
    cli_logging.quiet_unless_verbose(own_progress=True)
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        result = pretrain_teacher(
            name=FLAGS.name, language=FLAGS.language, corpus=FLAGS.input,
            work_dir=FLAGS.work_dir, output_dir=FLAGS.output_dir,
            config_file=FLAGS.config_file, params_override=FLAGS.params_override,
            lower_case=FLAGS.lower_case, vocab_size=FLAGS.vocab_size, vocab=FLAGS.vocab,
            fmt=FLAGS.format, num_shards=FLAGS.num_shards, seed=FLAGS.seed,
            whole_word_masking=FLAGS.whole_word_masking, overwrite=FLAGS.overwrite,
            document_format=FLAGS.document_format)
    except (FileExistsError, ValueError, RuntimeError) as error:
        sys.exit(f"error: {error}")
    print(f"teacher {FLAGS.name}: {result.teacher_dir} (vocab {result.vocab_size}, "
          f"{result.examples} examples, {result.steps} steps, MLM loss {result.first_loss:.3f} "
          f"-> {result.last_loss:.3f})")


if __name__ == "__main__":
    define_flags()
    app.run(main)
