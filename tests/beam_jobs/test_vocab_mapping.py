"""map_to_student: input, gold and top-k ids through a teacher → student map; changes counted."""

import collections

import numpy as np
import pytest

from beam_jobs import vocab_mapping
from beam_jobs.vocab_mapping import MappingError, map_to_student
from teacher_scoring.records import record_schema
from vocab.union import StudentVocab

S, P, K = 12, 4, 3


def _teacher_vocab():
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]", "the", "cat", "##s", "sat",
            "mat"]


def _vocab():
    other = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "dog", "cat", "the"]
    return StudentVocab.build({"other": other, "t": _teacher_vocab()})


def _example(**changes):
    # [CLS] the [MASK] sat the mat [SEP] pad...; slots at 2 (gold cat), 4 (gold the).
    ids = np.zeros(S, np.int32)
    ids[:7] = [2, 6, 4, 9, 6, 10, 3]
    mask = np.zeros(S, np.int32)
    mask[:7] = 1
    values = dict(
        input_word_ids=ids, input_mask=mask, input_type_ids=np.zeros(S, np.int32),
        masked_lm_positions=np.array([2, 4, 0, 0], np.int32),
        masked_lm_ids=np.array([7, 6, 0, 0], np.int32),
        masked_lm_weights=np.array([1, 1, 0, 0], np.float32),
        language="en", teacher="t", example_id="en-abc-0",
        teacher_topk_ids=np.array([[7, 5, 8], [6, 9, 10], [0, 0, 0], [0, 0, 0]], np.int32),
        teacher_topk_logits=np.array([[3., 2., 1.], [5., 4., 3.], [0, 0, 0], [0, 0, 0]],
                                     np.float32),
        teacher_loss=0.5)
    values.update(changes)
    return record_schema.ScoredExample(**values)


def test_ids_map_to_the_same_tokens_and_unused_entries_are_dropped():
    vocab = _vocab()
    counts = collections.Counter()
    out = map_to_student(_example(), vocab.maps["t"], counts)
    student, teacher = vocab.tokens, _teacher_vocab()
    ex = _example()
    for i in range(7):
        assert student[out.input_word_ids[i]] == teacher[ex.input_word_ids[i]]
    assert np.all(out.input_word_ids[7:] == 0)
    assert student[out.masked_lm_ids[0]] == "cat" and student[out.masked_lm_ids[1]] == "the"
    np.testing.assert_array_equal(out.masked_lm_positions, [2, 4, 0, 0])
    # [unused0] (teacher id 5) has no student id: that entry is -1 with logit 0, others kept.
    assert out.teacher_topk_ids[0, 1] == -1 and out.teacher_topk_logits[0, 1] == 0
    assert [student[i] for i in out.teacher_topk_ids[0, [0, 2]]] == ["cat", "##s"]
    assert [student[i] for i in out.teacher_topk_ids[1]] == ["the", "sat", "mat"]
    np.testing.assert_array_equal(out.teacher_topk_logits[1], [5, 4, 3])
    assert np.all(out.teacher_topk_ids[2:] == 0) and np.all(out.teacher_topk_logits[2:] == 0)
    assert counts == {vocab_mapping.TOPK_ENTRIES: 6, vocab_mapping.TOPK_NO_STUDENT_ID: 1}
    assert out.teacher_loss == 0.5 and out.teacher == "t"
    # The result is a valid record of the student space.
    spec = record_schema.ShardSpec(S, P, K)
    back = record_schema.deserialize(record_schema.serialize(out, spec), spec)
    np.testing.assert_array_equal(back.teacher_topk_ids, out.teacher_topk_ids)
    assert np.all(back.input_word_ids < vocab.size)


def test_unused_input_becomes_unk_and_unused_gold_removes_the_slot():
    vocab = _vocab()
    ex = _example()
    ex.input_word_ids[3] = 5            # a random replacement that drew [unused0]
    ex.masked_lm_ids[0] = 5             # gold of slot 0 has no student id
    counts = collections.Counter()
    out = map_to_student(ex, vocab.maps["t"], counts)
    assert out.input_word_ids[3] == vocab_mapping.STUDENT_UNK_ID
    # Slot 0 removed, slot 1 moved up, padding after it.
    np.testing.assert_array_equal(out.masked_lm_positions, [4, 0, 0, 0])
    np.testing.assert_array_equal(out.masked_lm_weights, [1, 0, 0, 0])
    assert [vocab.tokens[i] for i in out.teacher_topk_ids[0]] == ["the", "sat", "mat"]
    assert counts[vocab_mapping.INPUT_NO_STUDENT_ID] == 1
    assert counts[vocab_mapping.GOLD_NO_STUDENT_ID] == 1
    assert counts[vocab_mapping.TOPK_ENTRIES] == 3


def test_copy_without_any_slot_left_is_dropped_and_counted():
    ex = _example(masked_lm_ids=np.array([5, 5, 0, 0], np.int32))
    counts = collections.Counter()
    assert map_to_student(ex, _vocab().maps["t"], counts) is None
    assert counts[vocab_mapping.NO_SLOT_LEFT] == 1


def test_out_of_vocabulary_ids_are_errors_naming_the_copy():
    ex = _example()
    ex.teacher_topk_ids[1, 2] = 99
    with pytest.raises(MappingError, match=r"'en-abc-0'.*teacher_topk_ids.*99"):
        map_to_student(ex, _vocab().maps["t"])


def test_gold_only_copy_maps_inputs_and_gold_without_teacher_fields():
    vocab = _vocab()
    example = _example(teacher_topk_ids=None, teacher_topk_logits=None, teacher_loss=None)
    counts = collections.Counter()
    out = map_to_student(example, vocab.maps["t"], counts, teacher_outputs=False)
    scored = map_to_student(_example(), vocab.maps["t"])
    for field in ("input_word_ids", "input_mask", "masked_lm_positions", "masked_lm_ids",
                  "masked_lm_weights"):
        np.testing.assert_array_equal(getattr(out, field), getattr(scored, field))
    assert out.teacher_topk_ids is None and out.teacher_loss is None
    assert vocab_mapping.TOPK_ENTRIES not in counts
    spec = record_schema.ShardSpec(S, P, K, has_teacher_outputs=False)
    back = record_schema.deserialize(record_schema.serialize(out, spec), spec)
    np.testing.assert_array_equal(back.masked_lm_ids, scored.masked_lm_ids)
    # A copy of a scored language without scores is a bug upstream, not a gold-only copy.
    with pytest.raises(MappingError, match="no teacher outputs"):
        map_to_student(example, vocab.maps["t"])
