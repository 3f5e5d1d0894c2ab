"""Test helpers: a student vocab.txt and scored shard folders written through the real schema.

Shards are written with `teacher_scoring.records.record_schema.serialize` and described by a
`teacher_scoring.records.manifest.Manifest` (write_manifest), exactly as the scoring job does, so the
student reads them through the same code path as production data. Ids and logits are random.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from teacher_scoring.records import manifest as manifest_lib
from teacher_scoring.records import record_schema
from teacher_scoring.examples import tokenization
NUM_SPECIAL = 5  # [PAD] [UNK] [CLS] [SEP] [MASK]


def write_vocab(folder: str, size: int) -> str:
    """A student vocab folder with vocab.txt of `size` tokens; returns the folder."""
    os.makedirs(folder, exist_ok=True)
    tokens = list(tokenization.SPECIAL_TOKENS) + [f"tok{i}" for i in range(size - NUM_SPECIAL)]
    with open(os.path.join(folder, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in tokens))
    return folder


def vocab_sha256(folder: str) -> str:
    return manifest_lib.sha256_of_file(os.path.join(folder, "vocab.txt"))


def random_example(rng: np.random.Generator, language: str, index: int, vocab_size: int,
                   spec: record_schema.ShardSpec, invalid_fraction: float = 0.1
                   ) -> record_schema.ScoredExample:
    """One random masked example: a [CLS] ... [SEP] sequence of random length, ~15% masked."""
    s, p, k = spec.seq_length, spec.max_predictions_per_seq, spec.top_k
    length = int(rng.integers(max(4, s // 2), s + 1))
    ids = np.zeros([s], np.int32)
    ids[0], ids[length - 1] = 2, 3
    ids[1:length - 1] = rng.integers(NUM_SPECIAL, vocab_size, size=length - 2)
    mask = np.zeros([s], np.int32)
    mask[:length] = 1
    n_pred = int(np.clip(round(0.15 * (length - 2)), 1, p))
    positions = np.zeros([p], np.int32)
    positions[:n_pred] = np.sort(rng.choice(np.arange(1, length - 1), n_pred, replace=False))
    gold = np.zeros([p], np.int32)
    gold[:n_pred] = ids[positions[:n_pred]]
    ids[positions[:n_pred]] = 4  # [MASK]
    weights = np.zeros([p], np.float32)
    weights[:n_pred] = 1.0
    example = record_schema.ScoredExample(
        input_word_ids=ids, input_mask=mask, input_type_ids=np.zeros([s], np.int32),
        masked_lm_positions=positions, masked_lm_ids=gold, masked_lm_weights=weights,
        language=language, teacher=f"teacher_{language}", example_id=f"{language}-{index}")
    if spec.has_teacher_outputs:
        topk_ids = np.zeros([p, k], np.int32)
        topk_logits = np.zeros([p, k], np.float32)
        for slot in range(n_pred):
            topk_ids[slot] = rng.choice(np.arange(NUM_SPECIAL, vocab_size), k, replace=False)
            topk_logits[slot] = np.sort(rng.normal(size=k) * 3.0)[::-1]
            drop = rng.random(k) < invalid_fraction
            topk_ids[slot][drop] = record_schema.INVALID_ID
        example.teacher_topk_ids = topk_ids
        example.teacher_topk_logits = topk_logits
        example.teacher_loss = float(rng.random() * 5)
    return example


def write_shards(folder: str, languages: dict[str, int], vocab_folder: str, seq_length: int,
                 max_predictions_per_seq: int, top_k: int = 8, logits_dtype: str = "float32",
                 has_teacher_outputs: bool = True, id_space: str = "student",
                 shards_per_language: int = 2, compression: str = "", seed: int = 0,
                 manifest_overrides: dict | None = None) -> manifest_lib.Manifest:
    """Writes `folder`/<lang>-0000N-of-0000M.tfrecord and manifest.json; returns the manifest.

    Args:
      languages: language -> number of examples.
      vocab_folder: the folder holding vocab.txt (its sha256 and size go into the manifest).
      manifest_overrides: fields set on the Manifest before it is written (to test mismatches).
    """
    os.makedirs(folder, exist_ok=True)
    vocab_size = len(tokenization.read_vocab(os.path.join(vocab_folder, "vocab.txt")))
    spec = record_schema.ShardSpec(seq_length, max_predictions_per_seq, top_k, logits_dtype,
                                   has_teacher_outputs)
    rng = np.random.default_rng(seed)
    entries = {}
    teachers = {}
    options = tf.io.TFRecordOptions(compression_type=compression or None)
    for language, count in languages.items():
        names = [f"{language}-{i:05d}-of-{shards_per_language:05d}.tfrecord"
                 for i in range(shards_per_language)]
        writers = [tf.io.TFRecordWriter(os.path.join(folder, n), options) for n in names]
        masked = 0
        for i in range(count):
            example = random_example(rng, language, i, vocab_size, spec)
            masked += example.num_predictions
            writers[i % shards_per_language].write(record_schema.serialize(example, spec))
        for w in writers:
            w.close()
        teacher = f"teacher_{language}"
        teachers[teacher] = manifest_lib.TeacherEntry(
            vocab_sha256="0" * 64, vocab_size=vocab_size, languages=[language], lower_case=False)
        entries[language] = manifest_lib.LanguageEntry(
            examples=count, masked_tokens=masked, shards=names,
            teachers={teacher: manifest_lib.TeacherCounts(examples=count, masked_tokens=masked)})
    manifest = manifest_lib.Manifest(
        seq_length=seq_length, max_predictions_per_seq=max_predictions_per_seq, top_k=top_k,
        logits_dtype=logits_dtype, has_teacher_outputs=has_teacher_outputs, id_space=id_space,
        vocab_sha256=vocab_sha256(vocab_folder), vocab_size=vocab_size, teachers=teachers,
        languages=entries, seed=seed, compression=compression)
    for name, value in (manifest_overrides or {}).items():
        setattr(manifest, name, value)
    if manifest_overrides:
        # Write without validation so that tests can produce any manifest content.
        path = manifest_lib.manifest_path(folder)
        with open(path, "w", encoding="utf-8") as f:
            f.write(manifest.to_json())
    else:
        manifest_lib.write_manifest(manifest, folder)
    return manifest


def truncate_file(path: str, keep_fraction: float = 0.6) -> None:
    """Cuts a shard in the middle of a record."""
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[:int(len(data) * keep_fraction)])


def corrupt_file(path: str, offset_fraction: float = 0.5) -> None:
    """Flips bytes inside a record (its CRC no longer matches)."""
    data = bytearray(open(path, "rb").read())
    offset = int(len(data) * offset_fraction)
    for i in range(offset, min(offset + 8, len(data))):
        data[i] ^= 0xFF
    with open(path, "wb") as f:
        f.write(bytes(data))


def set_teacher_logits(path: str, value: float, records=None,
                       feature_name: str = record_schema.TEACHER_TOPK_LOGITS) -> int:
    """Rewrites an uncompressed shard with a float32 feature (default: the teacher logits) of
    some records set to `value` (e.g. NaN, or a huge finite logit), bypassing the writer's
    validation the way a foreign or damaged writer would. `records`: indices to change (None:
    all). Returns the number of records changed."""
    raw = [r.numpy() for r in tf.data.TFRecordDataset(path)]
    changed = 0
    with tf.io.TFRecordWriter(path) as writer:
        for index, data in enumerate(raw):
            example = tf.train.Example.FromString(data)
            if records is None or index in records:
                feature = example.features.feature[feature_name]
                values = list(feature.float_list.value)
                if not values:
                    raise ValueError(f"{path}: record {index} has no float32 {feature_name}")
                feature.float_list.value[:] = [value] * len(values)
                changed += 1
            writer.write(example.SerializeToString())
    return changed
