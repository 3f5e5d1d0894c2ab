"""Scored shard folders as the student reads them: manifests checked against the student config.

One `LanguageSource` per `--shards LANG=DIR`: the folder's manifest (read and validated by
`teacher_scoring.records.manifest`), the language's shard files and example count. `open_sources` refuses,
before anything is built, every mismatch between a manifest and the run (naming the manifest file
and the field): schema version, S, P, the vocabulary (sha256 and size of the student vocab.txt),
and, when the KD term is used, teacher outputs present, k, logits dtype and `id_space == student`.

Gold-only shards (`has_teacher_outputs: false`):
  * lambda 0 throughout: accepted; the same trainer then pretrains on any vocabulary (e.g. a
    teacher's own, `id_space: teacher`), checked against the vocab.txt passed as --student_vocab;
  * lambda > 0: accepted only for a language declared in `data.gold_only_languages` (and then
    only in `id_space: student`), beside at least one distilled language: its LanguageSource is
    `gold_only` and its examples train with MLM only (KD weight 0, input_pipeline.py). A declared
    language whose manifest has teacher outputs is refused, and a distilled folder whose records
    lack the teacher fields fails when read (the scan names the file): a folder is gold-only only
    when its manifest says so and the run declares it.

`scan_shards` reads shards completely (records, schema, id ranges, NaN/infinite float values) to
find corrupt or truncated files; the trainer uses it to name the file behind a data error, and
the `skip` policy uses it to leave bad shards out before training.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import re

import tensorflow as tf

from teacher_scoring.records import manifest as manifest_lib
from teacher_scoring.records import record_schema
from teacher_scoring.examples import tokenization
from student import config as config_lib

VOCAB_FILENAME = "vocab.txt"


class ShardError(ValueError):
    """A shard folder or file cannot be used (names the path and the problem)."""


@dataclasses.dataclass(frozen=True)
class LanguageSource:
    """One language's scored shards (from one folder)."""

    language: str
    shard_dir: str
    manifest: manifest_lib.Manifest
    files: tuple[str, ...]
    # Declared gold-only beside distilled languages (lambda > 0): read without teacher fields.
    gold_only: bool = False

    @property
    def manifest_path(self) -> str:
        return manifest_lib.manifest_path(self.shard_dir)

    @property
    def num_examples(self) -> int:
        """Records on disk (in `all` mode: one per example and teacher)."""
        return self.manifest.languages[self.language].examples

    @property
    def num_unique_examples(self) -> int:
        """Distinct examples (example ids): what language sampling counts, so that `all` and
        `best` shards of the same text give the same language mixture
        (manifest.Manifest.sampling_count)."""
        return self.manifest.sampling_count(self.language, self.manifest_path)

    @property
    def compression(self) -> str:
        return self.manifest.compression

    def replace_files(self, files) -> "LanguageSource":
        return dataclasses.replace(self, files=tuple(files))


@dataclasses.dataclass(frozen=True)
class StudentVocab:
    """The vocab.txt the student is trained on: path, tokens and sha256 of the file."""

    path: str
    tokens: tuple[str, ...]
    sha256: str

    @property
    def size(self) -> int:
        return len(self.tokens)


def parse_shards_flag(values) -> dict[str, str]:
    """`["en=DIR", "de=DIR"]` -> {"en": "DIR", "de": "DIR"} (order kept; one folder a language)."""
    shards: dict[str, str] = {}
    for value in values or ():
        language, sep, path = value.partition("=")
        language, path = language.strip(), path.strip()
        if not sep or not language or not path:
            raise ShardError(f"--shards {value!r}: expected LANGUAGE=FOLDER, e.g. en=/data/en")
        if language in shards:
            raise ShardError(f"--shards: language {language!r} given twice ({shards[language]} "
                             f"and {path}); give one folder a language")
        shards[language] = path
    if not shards:
        raise ShardError("--shards: no shard folders given (--shards en=DIR --shards de=DIR ...)")
    return shards


def read_student_vocab(path: str, config: config_lib.StudentConfig | None = None
                       ) -> StudentVocab:
    """Reads the vocab.txt at `path` (or `path`/vocab.txt) and checks its size against `config`.

    A config vocab_size of 0 is set to the file's size (config.resolve_vocab_size).

    Raises:
      ShardError: no such file.
      tokenization.VocabError: malformed vocab.txt.
      config.ConfigError: the number of tokens differs from model.encoder.bert_v2.vocab_size.
    """
    vocab_path = path
    if tf.io.gfile.isdir(path):
        vocab_path = os.path.join(path, VOCAB_FILENAME)
    if not tf.io.gfile.exists(vocab_path):
        raise ShardError(f"--student_vocab {path}: no vocab file at {vocab_path}")
    tokens = tokenization.read_vocab(vocab_path)
    if config is not None:
        config_lib.resolve_vocab_size(config, vocab_path, len(tokens))
    return StudentVocab(path=vocab_path, tokens=tuple(tokens),
                        sha256=manifest_lib.sha256_of_file(vocab_path))


def reading_spec(data_config: config_lib.DataConfig, use_teacher: bool) -> record_schema.ShardSpec:
    """The ShardSpec the student parses with (teacher fields only when the KD term is used)."""
    return record_schema.ShardSpec(
        seq_length=data_config.seq_length,
        max_predictions_per_seq=data_config.max_predictions_per_seq,
        top_k=data_config.top_k,
        logits_dtype=data_config.logits_dtype,
        has_teacher_outputs=use_teacher)


def source_spec(source: LanguageSource,
                spec: record_schema.ShardSpec) -> record_schema.ShardSpec:
    """The spec `source`'s records are read with: the run's `spec` (reading_spec), without the
    teacher fields for a gold-only source."""
    if source.gold_only and spec.has_teacher_outputs:
        return dataclasses.replace(spec, has_teacher_outputs=False)
    return spec


def open_sources(shards: dict[str, str], data_config: config_lib.DataConfig,
                 vocab: StudentVocab, use_teacher: bool) -> list[LanguageSource]:
    """Reads every folder's manifest, checks it against the run and lists the shard files.

    Args:
      shards: language -> shard folder.
      data_config: the `data` section (S, P, k, logits dtype).
      vocab: the student vocab (its sha256 and size must be the manifest's).
      use_teacher: lambda > 0 at some step (KD term used).

    Returns:
      One LanguageSource per language, in the order given.

    Raises:
      ShardError: a folder is missing, a language has no data, `data.gold_only_languages` names
        a language without a folder, or every language is gold-only under lambda > 0.
      manifest.ManifestError: a manifest is malformed or does not match (file and field named).
    """
    declared = list(data_config.gold_only_languages)
    unknown = [language for language in declared if language not in shards]
    if unknown:
        raise ShardError(f"config field 'data.gold_only_languages' names {unknown[0]!r}, which "
                         f"has no --shards folder (given: {sorted(shards)})")
    sources = []
    for language, shard_dir in shards.items():
        if not tf.io.gfile.isdir(shard_dir):
            raise ShardError(f"--shards {language}={shard_dir}: no such folder")
        manifest = manifest_lib.read_manifest(shard_dir)
        where = manifest_lib.manifest_path(shard_dir)
        expected = dict(
            schema_version=record_schema.SCHEMA_VERSION,
            seq_length=data_config.seq_length,
            max_predictions_per_seq=data_config.max_predictions_per_seq,
            vocab_sha256=vocab.sha256,
            vocab_size=vocab.size,
        )
        if manifest.packing != data_config.packing:
            raise manifest_lib.ManifestError(
                f"{where}: field 'packing' is {manifest.packing!r} but config field "
                f"'data.packing' is {data_config.packing!r}; train on shards packed the way the "
                f"config says, or set data.packing: {manifest.packing}")
        gold_only = language in declared
        if gold_only and manifest.has_teacher_outputs:
            raise manifest_lib.ManifestError(
                f"{where}: field 'has_teacher_outputs' is True but config field "
                f"'data.gold_only_languages' declares {language!r} gold-only; remove it from "
                "that list to distil it")
        if use_teacher:
            if not manifest.has_teacher_outputs and not gold_only:
                raise manifest_lib.ManifestError(
                    f"{where}: field 'has_teacher_outputs' is False (gold labels only) but the "
                    "loss uses the KD term (lambda > 0); train on scored shards, declare "
                    f"{language!r} in data.gold_only_languages to train it on gold labels only "
                    "beside distilled languages, or set "
                    "loss.lambda_schedule=constant,loss.lambda_start=0.0 for plain MLM")
            expected.update(id_space="student")
            if not gold_only:
                expected.update(top_k=data_config.top_k, logits_dtype=data_config.logits_dtype)
        manifest_lib.check_matches(manifest, where, **expected)
        files = manifest_lib.shard_paths(manifest, shard_dir, language)
        if not files:
            raise ShardError(f"{where}: language {language!r} lists no shard files")
        if manifest.languages[language].examples <= 0:
            raise ShardError(f"{where}: language {language!r} has "
                             f"{manifest.languages[language].examples} examples")
        manifest.sampling_count(language, where)  # refuses an `all` manifest without the count
        sources.append(LanguageSource(language=language, shard_dir=shard_dir, manifest=manifest,
                                      files=tuple(files), gold_only=gold_only and use_teacher))
    if use_teacher and all(source.gold_only for source in sources):
        raise ShardError(f"every language is gold-only (data.gold_only_languages: {declared}) but "
                         "lambda > 0: no example has teacher outputs; set "
                         "loss.lambda_schedule=constant,loss.lambda_start=0.0 for plain MLM")
    return sources


@dataclasses.dataclass(frozen=True)
class ShardScan:
    """What reading one shard completely found."""

    path: str
    records: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def op_error_message(error: tf.errors.OpError) -> str:
    """The useful part of a TF op error message (no function/node decorations)."""
    lines = []
    for line in error.message.splitlines():
        line = re.sub(r"\{\{[^}]*\}\}", "", line).split("[Op:")[0].strip()
        if line and not line.startswith(("Graph execution error", "Detected at node", "File ",
                                          "[[")):
            lines.append(line)
    return lines[-1] if lines else type(error).__name__


class _Scanner:
    """Reads a shard file to the end: parses every record, checks id ranges and counts NaN or
    infinite float values (masked_lm_weights, teacher_topk_logits, teacher_loss)."""

    def __init__(self, spec: record_schema.ShardSpec, compression: str, vocab_size: int):
        self._spec = spec
        self._compression = compression
        self._vocab_size = vocab_size
        # Traced once here: the scanner is then called from several threads.
        self._fn = tf.function(self._scan, input_signature=[tf.TensorSpec([], tf.string)]
                               ).get_concrete_function()

    def _scan(self, path):
        records = tf.data.TFRecordDataset(path, compression_type=self._compression)
        batches = records.batch(256).map(
            lambda r: record_schema.parse_batch(r, self._spec, keep_strings=False))

        def step(state, batch):
            count, max_id, min_id, nonfinite = state
            ids = [batch[record_schema.INPUT_WORD_IDS], batch[record_schema.MASKED_LM_IDS]]
            if self._spec.has_teacher_outputs:
                ids.append(tf.reshape(batch[record_schema.TEACHER_TOPK_IDS], [-1]))
            flat = tf.concat([tf.reshape(x, [-1]) for x in ids], 0)
            inputs = tf.reshape(batch[record_schema.INPUT_WORD_IDS], [-1])
            bad = tf.stack([
                tf.reduce_sum(tf.cast(~tf.math.is_finite(batch[name]), tf.int64))
                if name in batch else tf.constant(0, tf.int64)
                for name in self.FLOAT_FIELDS])
            return (count + tf.shape(batch[record_schema.INPUT_WORD_IDS])[0],
                    tf.maximum(max_id, tf.reduce_max(flat)),
                    tf.minimum(min_id, tf.reduce_min(inputs)), nonfinite + bad)

        zeros = tf.zeros([len(self.FLOAT_FIELDS)], tf.int64)
        return batches.reduce((0, -1, 0, zeros), step)

    FLOAT_FIELDS = (record_schema.MASKED_LM_WEIGHTS, record_schema.TEACHER_TOPK_LOGITS,
                    record_schema.TEACHER_LOSS)

    def __call__(self, path: str) -> ShardScan:
        try:
            count, max_id, min_id, nonfinite = self._fn(tf.constant(path))
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError,
                tf.errors.OutOfRangeError, tf.errors.NotFoundError) as error:
            return ShardScan(path=path, records=-1, error=f"{type(error).__name__}: {op_error_message(error)}")
        count, max_id, min_id = int(count), int(max_id), int(min_id)
        nonfinite = {name: int(n) for name, n in zip(self.FLOAT_FIELDS, nonfinite.numpy()) if n}
        if nonfinite:
            return ShardScan(path=path, records=count, error=(
                "NaN or infinite values: " + ", ".join(f"{n} in {name}"
                                                       for name, n in nonfinite.items())))
        if max_id >= self._vocab_size or min_id < 0:
            return ShardScan(path=path, records=count, error=(
                f"ids out of range for a vocabulary of {self._vocab_size} "
                f"(max {max_id}, min input id {min_id})"))
        if count == 0:
            return ShardScan(path=path, records=0, error="no records")
        return ShardScan(path=path, records=count)


def scan_shards(sources: list[LanguageSource], spec: record_schema.ShardSpec, vocab_size: int,
                max_workers: int = 4) -> list[ShardScan]:
    """Reads every shard of `sources` completely (in parallel); one ShardScan per file.

    `spec` is the run's reading spec; gold-only sources are read without teacher fields
    (source_spec)."""
    jobs = []
    scanners: dict[tuple, _Scanner] = {}
    for source in sources:
        own_spec = source_spec(source, spec)
        key = (source.compression, own_spec)
        if key not in scanners:
            scanners[key] = _Scanner(own_spec, source.compression, vocab_size)
        jobs.extend((scanners[key], path) for path in source.files)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
        return list(pool.map(lambda job: job[0](job[1]), jobs))


def drop_corrupt_shards(sources: list[LanguageSource], spec: record_schema.ShardSpec,
                        vocab_size: int) -> tuple[list[LanguageSource], list[ShardScan]]:
    """The `skip` policy: scans every shard and leaves out the bad ones.

    Returns:
      (sources without the bad files, the ShardScan of every skipped file).

    Raises:
      ShardError: every shard of a language is bad.
    """
    scans = {scan.path: scan for scan in scan_shards(sources, spec, vocab_size)}
    kept, skipped = [], []
    for source in sources:
        good = [p for p in source.files if scans[p].ok]
        skipped.extend(scans[p] for p in source.files if not scans[p].ok)
        if not good:
            raise ShardError(f"{source.manifest_path}: every shard of {source.language!r} is "
                             f"corrupt: " + "; ".join(f"{p}: {scans[p].error}"
                                                      for p in source.files))
        kept.append(source.replace_files(good))
    return kept, skipped
