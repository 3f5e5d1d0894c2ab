r"""Corpus lines → masked examples, one copy per teacher; CLI for plain-MLM TFRecord shards.

`create_examples` is the whole "Building examples" step: documents (one a line) are segmented
for all of a language's teachers at once (`segmentation`), and every segment becomes one masked
example per teacher (`masking`). The Beam scoring job and the CLI below both call it.

The CLI writes plain-MLM shards for one teacher (ids in the teacher's vocab, no teacher
outputs: `ShardSpec(has_teacher_outputs=False)`), which is what a teacher is pretrained on
(`student.pretrain_teacher`), with a `manifest.json` (id_space "teacher", the vocab's
sha256, per-language counts, dropped inputs by reason, all counters, the seed, the packing):

  python -m teacher_scoring.examples.create_examples --input 'data/corpora/demo/en.txt' --language en \
      --vocab /tmp/en_vocab.txt --lower_case --teacher_name bert_en \
      --seq_length 128 --max_predictions_per_seq 20 --seed 12345 \
      [--packing full_sentences] --output_dir /tmp/en_mlm --num_shards 4

--packing (as the scoring config's `packing`): `within_document` (default, BERT's format: a
sequence holds one document's text) or `full_sentences` (RoBERTa's: sequences filled across
documents in input order, [SEP] between them; needs --short_seq_prob=0). The manifest records
it in its `packing` field (and `config.packing`), as the scoring job's manifests do.

An example goes to shard `sha256(example_id) % num_shards`, so the shards' contents do not
depend on how the input is read or batched. Input files are read as bytes: invalid UTF-8 is
dropped and counted, not fatal. An output folder that already holds shards or a manifest is
refused unless --overwrite (which deletes them first); the manifest is written last, so a
folder without one is an interrupted run.
"""

from __future__ import annotations

import array
import collections
import hashlib
import os
import sys
import time
from typing import Iterable, Iterator, Mapping

from absl import app, flags, logging
import numpy as np
import tensorflow as tf

from teacher_scoring.examples import documents as documents_lib
from teacher_scoring.records import manifest as manifest_lib
from teacher_scoring.examples import masking
from teacher_scoring.records import record_schema
from teacher_scoring.examples import segmentation
from teacher_scoring.examples.masking import MaskingConfig
from teacher_scoring.examples.tokenization import TeacherTokenizer, read_vocab

# Counter keys added by create_examples (segmentation adds its own, see its docstring).
EXAMPLES = "examples"
MASKED_TOKENS = "masked_tokens"

SHARD_SUFFIX = ".tfrecord"


def create_examples(documents: Iterable[str | bytes], language: str,
                    tokenizers: Mapping[str, TeacherTokenizer], config: MaskingConfig,
                    counts: collections.Counter | None = None,
                    batch_size: int = 256,
                    shared_masks: bool | None = None) -> Iterator[record_schema.ScoredExample]:
    """Yields the masked examples of `documents`, one per (segment, teacher).

    Args:
      documents: raw documents (`documents.iter_documents`), bytes or str.
      language: the documents' language code (goes into example_id and the records).
      tokenizers: teacher name → TeacherTokenizer, all teachers of `language`.
      config: sequence shape, packing (`packing`: within documents, or full sentences across
        the documents in the order given, `segmentation.pack_documents`; short_seq_prob) and
        masking recipe.
      counts: a Counter for the bad-input and volume counts (segmentation's keys plus
        'examples' and 'masked_tokens', and with shared masks masking's 'masked_words',
        'p_limited_words', 'p_limited_examples').
      batch_size: documents tokenized per tokenizer call (does not change the output).
      shared_masks: mask the same shared words in every copy of a segment
        (`masking.mask_shared_words`); None (default): when there are several teachers. False:
        every copy masked on its own (`masking.mask_segment`; the recipe of one teacher).

    Yields:
      ScoredExamples without teacher fields, in input order: document by document (with
      full-sentences packing: sequence by sequence), segment by segment, teachers in
      `tokenizers` order.
    """
    if counts is None:
        counts = collections.Counter()
    if shared_masks is None:
        shared_masks = len(tokenizers) > 1
    if config.packing == segmentation.FULL_SENTENCES:
        segments = segmentation.pack_documents(documents, tokenizers, config.max_tokens, counts,
                                               batch_size=batch_size)
    else:
        segments = (segment for document_segments in segmentation.iter_segments(
            documents, tokenizers, config.max_tokens, counts, batch_size=batch_size,
            short_seq_prob=config.short_seq_prob, seed=config.seed)
                    for segment in document_segments)
    for segment in segments:
        example_id = segment.example_id(language)
        if shared_masks:
            copies = masking.mask_shared_words(segment.pieces, tokenizers, config,
                                               example_id, language, counts).values()
        else:
            copies = (masking.mask_segment(pieces.ids, pieces.word_starts, tokenizers[name],
                                           config, example_id, name, language,
                                           pieces.separators)
                      for name, pieces in segment.pieces.items())
        for example in copies:
            counts[EXAMPLES] += 1
            counts[MASKED_TOKENS] += example.num_predictions
            yield example


def example_hash(example_id: str) -> int:
    """A stable 64-bit hash of an example id (first 8 bytes of its SHA-256, big-endian)."""
    return int.from_bytes(hashlib.sha256(example_id.encode("utf-8")).digest()[:8], "big")


def shard_index(example_id: str, num_shards: int) -> int:
    """The shard of an example: a stable hash of its id modulo num_shards (all copies of an
    example go to the same shard; the Beam job shards the same way)."""
    return example_hash(example_id) % num_shards


def shard_name(language: str, index: int, num_shards: int) -> str:
    return f"{language}-{index:05d}-of-{num_shards:05d}{SHARD_SUFFIX}"


def read_documents(patterns: Iterable[str], document_format: str = documents_lib.LINE,
                   counts: collections.Counter | None = None) -> Iterator[bytes]:
    """Yields every document (bytes) of every file matching the glob patterns, files in sorted
    order (`documents.iter_documents`: a line, or a run of lines between blank lines). In
    `line` format empty lines are yielded too (and counted as `empty`)."""
    documents_lib.check_format(document_format)
    files = []
    for pattern in patterns:
        matched = sorted(tf.io.gfile.glob(pattern))
        if not matched:
            raise FileNotFoundError(f"--input {pattern!r} matches no file")
        files.extend(matched)
    for path in files:
        with tf.io.gfile.GFile(path, "rb") as f:
            yield from documents_lib.iter_documents(f, document_format, counts)


def existing_outputs(output_dir: str) -> list[str]:
    """Files in output_dir that a previous run wrote (shards, manifest)."""
    if not tf.io.gfile.isdir(output_dir):
        return []
    return sorted(name for name in tf.io.gfile.listdir(output_dir)
                  if SHARD_SUFFIX in name or name.startswith(manifest_lib.MANIFEST_FILENAME))


def write_shards(documents: Iterable[str | bytes], language: str, teacher_name: str,
                 vocab: list[str], lower_case: bool, config: MaskingConfig, output_dir: str,
                 num_shards: int, overwrite: bool = False, vocab_path: str = "",
                 extra_config: dict | None = None,
                 extra_counts: collections.Counter | None = None) -> manifest_lib.Manifest:
    """Writes one teacher's plain-MLM shards of `documents` and their manifest.

    `extra_counts`: a Counter the document reader fills while `documents` is consumed
    (read_documents' `long_document_cut`); added to the manifest's counters.

    The manifest records `config.packing` (field `packing`, and `config.packing`); with
    full-sentences packing its `dropped` also lists `segmentation.PACKING_DROP_REASONS`.

    Returns:
      The manifest written to `output_dir`/manifest.json.

    Raises:
      FileExistsError: output_dir already holds shards or a manifest and overwrite is False.
    """
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    existing = existing_outputs(output_dir)
    if existing:
        if not overwrite:
            raise FileExistsError(
                f"{output_dir} already holds {len(existing)} shard/manifest file(s) "
                f"(e.g. {existing[0]}); pass --overwrite to replace them")
        for name in existing:
            tf.io.gfile.remove(os.path.join(output_dir, name))
    tf.io.gfile.makedirs(output_dir)

    tokenizer = TeacherTokenizer(vocab, lower_case)
    spec = record_schema.ShardSpec(config.seq_length, config.max_predictions_per_seq,
                                   has_teacher_outputs=False)
    names = [shard_name(language, i, num_shards) for i in range(num_shards)]
    writers = [tf.io.TFRecordWriter(os.path.join(output_dir, name)) for name in names]
    counts: collections.Counter = collections.Counter()
    written = masked = real_tokens = 0
    id_hashes = array.array("Q")   # 64-bit hashes of the example ids (distinct-example count)
    start = last_log = time.time()
    try:
        for example in create_examples(documents, language, {teacher_name: tokenizer}, config,
                                       counts):
            id_hash = example_hash(example.example_id)
            writers[id_hash % num_shards].write(record_schema.serialize(example, spec))
            id_hashes.append(id_hash)
            written += 1
            masked += example.num_predictions
            real_tokens += int(np.sum(example.input_mask))
            if time.time() - last_log > 30:
                last_log = time.time()
                logging.info("%d documents, %d examples (%.0f examples/s)",
                             counts[segmentation.DOCUMENTS], written,
                             written / (last_log - start))
    finally:
        for writer in writers:
            writer.close()
    elapsed = time.time() - start
    utilization = manifest_lib.token_utilization(real_tokens, written, config.seq_length)
    logging.info("wrote %d examples from %d documents in %.1f s (%.0f examples/s); token "
                 "utilization %.3f", written, counts[segmentation.DOCUMENTS], elapsed,
                 written / max(elapsed, 1e-9), utilization)

    vocab_sha256 = manifest_lib.sha256_of_tokens(vocab)
    drop_reasons = tuple(segmentation.DROP_REASONS)
    if config.packing == segmentation.FULL_SENTENCES:
        drop_reasons += tuple(segmentation.PACKING_DROP_REASONS)
    manifest = manifest_lib.Manifest(
        seq_length=config.seq_length,
        max_predictions_per_seq=config.max_predictions_per_seq,
        top_k=spec.top_k,
        logits_dtype=spec.logits_dtype,
        has_teacher_outputs=False,
        id_space="teacher",
        vocab_sha256=vocab_sha256,
        vocab_size=len(vocab),
        teachers={teacher_name: manifest_lib.TeacherEntry(
            vocab_sha256=vocab_sha256, vocab_size=len(vocab), languages=[language],
            lower_case=bool(lower_case), format="vocab", path=vocab_path)},
        languages={language: manifest_lib.LanguageEntry(
            examples=written, masked_tokens=masked, shards=names,
            teachers={teacher_name: manifest_lib.TeacherCounts(written, masked, real_tokens)},
            unique_examples=len(np.unique(np.frombuffer(id_hashes, np.uint64))),
            real_tokens=real_tokens, token_utilization=utilization)},
        seed=int(config.seed),
        copies_mode="single",
        dropped={reason: int(counts[reason]) for reason in drop_reasons},
        counters={key: int(value)
                  for key, value in sorted((counts + (extra_counts or collections.Counter()))
                                           .items())},
        config={
            "masked_lm_prob": config.masked_lm_prob,
            "whole_word_masking": config.whole_word_masking,
            "random_token_prob": config.random_token_prob,
            "keep_prob": config.keep_prob,
            "short_seq_prob": config.short_seq_prob,
            "packing": config.packing,
            "num_shards": num_shards,
            "numpy_version": np.__version__,
            **(extra_config or {}),
        },
        packing=config.packing,
    )
    manifest_lib.write_manifest(manifest, output_dir)
    return manifest


def main(argv):
    del argv
    try:
        config = MaskingConfig(
            seq_length=FLAGS.seq_length, max_predictions_per_seq=FLAGS.max_predictions_per_seq,
            masked_lm_prob=FLAGS.masked_lm_prob, whole_word_masking=FLAGS.whole_word_masking,
            seed=FLAGS.seed, short_seq_prob=FLAGS.short_seq_prob, packing=FLAGS.packing)
        counts = collections.Counter()
        documents = read_documents(FLAGS.input, FLAGS.document_format, counts)
        manifest = write_shards(
            documents, FLAGS.language, FLAGS.teacher_name,
            read_vocab(FLAGS.vocab), FLAGS.lower_case, config, FLAGS.output_dir,
            FLAGS.num_shards, overwrite=FLAGS.overwrite, vocab_path=FLAGS.vocab,
            extra_config={"input": list(FLAGS.input), "document_format": FLAGS.document_format},
            extra_counts=counts)
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
    entry = manifest.languages[FLAGS.language]
    dropped = {k: v for k, v in manifest.dropped.items() if v}
    print(f"wrote {entry.examples} examples ({entry.masked_tokens} masked tokens, token "
          f"utilization {entry.token_utilization:.3f}, packing {manifest.packing}) in "
          f"{len(entry.shards)} shards to {FLAGS.output_dir}; dropped: {dropped or 'nothing'}")


FLAGS = flags.FLAGS

if __name__ == "__main__":
    flags.DEFINE_multi_string("input", None, "Text file glob(s) (see --document_format).")
    flags.DEFINE_enum("document_format", documents_lib.LINE, documents_lib.DOCUMENT_FORMATS,
                      "line: one document a line; blank_line: BERT's format, one sentence or "
                      "paragraph a line, a blank line between documents (lines of a document "
                      "are packed into full sequences).")
    flags.DEFINE_float("short_seq_prob", 0.0, "Probability of a shorter target length for a "
                       "sequence (BERT's short_seq_prob; must be 0 with "
                       "--packing=full_sentences).")
    flags.DEFINE_enum("packing", segmentation.WITHIN_DOCUMENT, segmentation.PACKINGS,
                      "within_document: BERT's format, a sequence holds one document's text; "
                      "full_sentences: RoBERTa's, sequences filled across documents in input "
                      "order, [SEP] between them (needs --short_seq_prob=0). Recorded in the "
                      "manifest's `packing` (a student trains on it with data.packing the same).")
    flags.DEFINE_string("language", None, "Language code of the input, e.g. en.")
    flags.DEFINE_string("vocab", None, "The teacher's vocab.txt.")
    flags.DEFINE_bool("lower_case", False, "The teacher is uncased.")
    flags.DEFINE_string("teacher_name", None, "The teacher's name (goes into the records).")
    flags.DEFINE_integer("seq_length", 128, "S: tokens per example, [CLS] and [SEP] included.")
    flags.DEFINE_integer("max_predictions_per_seq", 20, "P: masked slots per example.")
    flags.DEFINE_float("masked_lm_prob", 0.15, "Fraction of the tokens to mask.")
    flags.DEFINE_integer("seed", 12345, "Masking seed (with example_id and teacher).")
    flags.DEFINE_bool("whole_word_masking", False, "Mask whole words.")
    flags.DEFINE_string("output_dir", None, "Folder for the shards and manifest.json.")
    flags.DEFINE_integer("num_shards", 1, "Number of TFRecord shards.")
    flags.DEFINE_bool("overwrite", False, "Replace shards and manifest already in output_dir.")
    flags.mark_flags_as_required(["input", "language", "vocab", "teacher_name", "output_dir"])
    app.run(main)
