"""BuildMaskedExamples: a language's documents → one masked copy per (segment, teacher).

Step 1 of MergeDistill (paper §3.1): the corpus is tokenized and masked with each teacher's
own tokenizer. This is `teacher_scoring.examples.create_examples.create_examples` run inside Beam:
documents are segmented for all the language's teachers at once (segments are
teacher-independent, so a segment's copies share its `example_id` — what `best` compares; a
document's lines are packed into full sequences), each document is tokenized once per teacher.
With several teachers the masked words are chosen once per segment on the shared word spans
(seeded by (seed, example_id)) and every copy masks the pieces of those words; with one teacher
a copy is masked on its own (seeded by (seed, example_id, teacher)) — deterministic whatever
the workers or bundles.
The composite is per language rather than per (language, teacher) because cutting a document
into segments needs every teacher's tokenization of it.

Documents are processed `document_batch_size` at a time (one tokenizer call per teacher per
batch). If a batch raises, its documents are retried one by one and a document that still
raises goes to the dead-letter output (`<lang>/dead_letter/build_examples`), the rest go on.

Full-sentences packing (`packing: full_sentences`: sequences filled across documents, a
separator between them; `segmentation.pack_documents`) needs the documents in an order that
does not depend on the runner: each document goes to packing group
`sha256(cleaned document) mod num_shards` (the language's `num_shards`), a GroupByKey brings a
group together, and the group is packed in the order of its documents' hashes (ties: identical
documents, of which one is kept). So a group is about one output shard's worth of text, held by
one worker while it is packed (the job config's advice for `num_shards` — a shard's records fit
in a worker's memory — bounds it too), and the examples are the same whatever the workers or
bundles; a Reshuffle after packing spreads the groups' examples over the workers again for
scoring. If a group raises, each of its documents is tried alone: those that raise go to the
dead letters and the group is packed again without them.

Counters: segmentation's, masking's and create_examples' keys per language (`<lang>/documents`,
`<lang>/invalid_utf8`, `<lang>/empty`, `<lang>/segments`, `<lang>/short_target`,
`<lang>/masked_words`, `<lang>/p_limited_words`, `<lang>/examples`, ...), and per
teacher `<lang>/<teacher>/examples` and `<lang>/<teacher>/masked_tokens` (copies sent to the
teacher) and `<lang>/<teacher>/no_masked_token` (copies dropped: masking chose no token).
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from typing import Sequence

import apache_beam as beam

from beam_jobs import dead_letter as dl
from beam_jobs import metrics
from beam_jobs.job_config import JobConfig
from teacher_scoring.examples import create_examples as create_examples_lib
from teacher_scoring.examples import documents
from teacher_scoring.examples import segmentation
from teacher_scoring.examples.masking import MaskingConfig
from teacher_scoring.examples.tokenization import TeacherTokenizer, clean_text

# A copy without any masked token (whole-word masking on a very short segment: the only
# word is longer than the number of tokens to predict, so BERT's recipe picks nothing). It has
# nothing to distil; it is dropped and counted per teacher.
NO_MASKED_TOKEN = "no_masked_token"

# Keys of segmentation / cleaning / this step that mean input was dropped or changed (the
# manifest's `dropped`).
DROP_REASONS = tuple(segmentation.DROP_REASONS) + (
    segmentation.INVALID_UTF8, segmentation.CONTROL_CHARACTERS, NO_MASKED_TOKEN,
    documents.LONG_DOCUMENT_CUT) + tuple(segmentation.PACKING_DROP_REASONS)


@dataclasses.dataclass(frozen=True)
class TeacherSpec:
    """What a worker needs to tokenize for a teacher (no model): name, vocab, casing."""

    name: str
    vocab: tuple[str, ...]
    lower_case: bool


# One tokenizer per (vocabulary, casing) per worker process, shared by the DoFns of every
# language it serves: building one traces tf-text's tokenizer graph (most of the job's CPU time
# outside scoring when each language built its own; docs/scoring_job.md, benchmark). A
# TeacherTokenizer is safe to share between threads (a tf.function and read-only tables).
_TOKENIZERS: dict = {}
_TOKENIZERS_LOCK = threading.Lock()


def shared_tokenizer(teacher: TeacherSpec) -> TeacherTokenizer:
    """The process's tokenizer for `teacher`'s vocabulary and casing (built on first use)."""
    key = (teacher.vocab, teacher.lower_case)
    with _TOKENIZERS_LOCK:
        tokenizer = _TOKENIZERS.get(key)
        if tokenizer is None:
            tokenizer = _TOKENIZERS[key] = TeacherTokenizer(list(teacher.vocab),
                                                            teacher.lower_case)
        return tokenizer


def masking_config(config: JobConfig) -> MaskingConfig:
    return MaskingConfig(seq_length=config.seq_length,
                         max_predictions_per_seq=config.max_predictions_per_seq,
                         masked_lm_prob=config.masked_lm_prob,
                         whole_word_masking=config.whole_word_masking, seed=config.seed,
                         short_seq_prob=config.short_seq_prob, packing=config.packing)


class _BuildFn(beam.DoFn):
    """A batch of documents → masked copies (main output) and dead letters."""

    def __init__(self, language: str, teachers: Sequence[TeacherSpec], config: MaskingConfig):
        self._language = language
        self._teachers = list(teachers)
        self._config = config

    def setup(self):
        self._tokenizers = {t.name: shared_tokenizer(t) for t in self._teachers}
        self._counters = metrics.Counters()
        self._progress = metrics.ProgressLog(f"{self._language}: documents read")

    def _build(self, documents):
        counts = collections.Counter()
        examples = list(create_examples_lib.create_examples(
            documents, self._language, self._tokenizers, self._config, counts,
            batch_size=max(1, len(documents))))
        return examples, counts

    def _emit(self, examples, counts):
        self._counters.add(self._language, None, counts)
        per_teacher = collections.Counter()
        masked = collections.Counter()
        kept = []
        for example in examples:
            n = example.num_predictions
            if n == 0:
                self._counters.inc(self._language, example.teacher, NO_MASKED_TOKEN)
                continue
            per_teacher[example.teacher] += 1
            masked[example.teacher] += n
            kept.append(example)
        for teacher, n in per_teacher.items():
            self._counters.inc(self._language, teacher, metrics.EXAMPLES, n)
            self._counters.inc(self._language, teacher, metrics.MASKED_TOKENS, masked[teacher])
        return kept

    def process(self, documents):
        documents = list(documents)
        self._progress.add(len(documents))
        try:
            built = self._build(documents)
        except Exception:  # pylint: disable=broad-except
            built = None  # find the culprit(s): one document at a time
        if built is not None:
            yield from self._emit(*built)
            return
        for document in documents:
            try:
                examples, counts = self._build([document])
            except Exception as error:  # pylint: disable=broad-except
                self._counters.inc(self._language, None,
                                   f"{metrics.DEAD_LETTER}/{dl.BUILD_EXAMPLES}")
                yield beam.pvalue.TaggedOutput(dl.DEAD_LETTER, dl.dead_letter(
                    dl.BUILD_EXAMPLES, self._language, None, dl.error_reason(error), document))
                continue
            yield from self._emit(examples, counts)


def packing_key(document: bytes, num_groups: int) -> tuple[int, tuple[str, bytes]]:
    """(packing group, (document hash, document)): the group is the cleaned document's hash
    modulo `num_groups`, the hash orders the group (full-sentences packing)."""
    doc_hash = segmentation.document_hash(clean_text(document))
    return int(doc_hash, 16) % num_groups, (doc_hash, bytes(document))


class _PackGroupFn(_BuildFn):
    """A packing group (hash-ordered documents) → full-sentences masked copies, dead letters."""

    def __init__(self, language: str, teachers: Sequence[TeacherSpec], config: MaskingConfig,
                 batch_size: int):
        super().__init__(language, teachers, config)
        self._batch_size = batch_size

    def _build(self, documents):
        counts = collections.Counter()
        examples = list(create_examples_lib.create_examples(
            documents, self._language, self._tokenizers, self._config, counts,
            batch_size=self._batch_size))
        return examples, counts

    def process(self, element):
        _, keyed = element
        documents = [document for _, document in sorted(keyed)]
        self._progress.add(len(documents))
        try:
            yield from self._emit(*self._build(documents))
            return
        except Exception:  # pylint: disable=broad-except
            pass  # find the culprit(s): each document alone, then the group without them
        kept = []
        for document in documents:
            try:
                self._build([document])
            except Exception as error:  # pylint: disable=broad-except
                yield self._dead_letter(error, document)
                continue
            kept.append(document)
        try:
            built = self._build(kept)
        except Exception as error:  # pylint: disable=broad-except
            for document in kept:
                yield self._dead_letter(error, document)
            return
        yield from self._emit(*built)

    def _dead_letter(self, error, document):
        self._counters.inc(self._language, None, f"{metrics.DEAD_LETTER}/{dl.BUILD_EXAMPLES}")
        return beam.pvalue.TaggedOutput(dl.DEAD_LETTER, dl.dead_letter(
            dl.BUILD_EXAMPLES, self._language, None, dl.error_reason(error), document))


class BuildMaskedExamples(beam.PTransform):
    """PCollection[bytes] (one language's documents) → tagged outputs `examples`
    (ScoredExample without teacher outputs, teacher id space, one per segment and teacher)
    and `dead_letter`."""

    EXAMPLES = "examples"

    def __init__(self, language: str, teachers: Sequence[TeacherSpec], config: JobConfig):
        super().__init__()
        self._language = language
        self._teachers = list(teachers)
        self._masking = masking_config(config)
        self._batch_size = config.document_batch_size
        self._num_groups = config.languages[language].num_shards

    def expand(self, documents):
        if self._masking.packing == segmentation.FULL_SENTENCES:
            num_groups = self._num_groups
            outputs = (documents
                       | "KeyByPackingGroup" >> beam.Map(packing_key, num_groups)
                       | "GroupForPacking" >> beam.GroupByKey()
                       | "PackAndMask" >> beam.ParDo(
                           _PackGroupFn(self._language, self._teachers, self._masking,
                                        self._batch_size)
                       ).with_outputs(dl.DEAD_LETTER, main=self.EXAMPLES))
            return {self.EXAMPLES: outputs[self.EXAMPLES] | "SpreadPackedExamples" >>
                    beam.Reshuffle(),
                    dl.DEAD_LETTER: outputs[dl.DEAD_LETTER]}
        outputs = (documents
                   | "BatchDocuments" >> beam.BatchElements(
                       min_batch_size=self._batch_size, max_batch_size=self._batch_size)
                   | "SegmentAndMask" >> beam.ParDo(
                       _BuildFn(self._language, self._teachers, self._masking)).with_outputs(
                           dl.DEAD_LETTER, main=self.EXAMPLES))
        return {self.EXAMPLES: outputs[self.EXAMPLES], dl.DEAD_LETTER: outputs[dl.DEAD_LETTER]}
