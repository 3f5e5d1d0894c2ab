"""The union's cost: leave-one-out sizes equal StudentVocab built without the teacher (hand-made
vocabularies, and the demo report's teachers)."""

import pytest

from beam_jobs.teacher_report import union_cost as union_cost_lib

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def test_union_cost_leave_one_out_equals_student_vocab_without_the_teacher():
    from vocab.union import StudentVocab

    vocabs = {"a": SPECIALS + ["x", "y", "z"], "b": SPECIALS + ["y", "w"],
              "c": SPECIALS + ["z", "w", "v", "[unused0]"]}
    cost = union_cost_lib.union_cost(vocabs)
    assert cost["student_size"] == StudentVocab.build(vocabs).size == 5 + 5
    for name in vocabs:
        without = StudentVocab.build({n: v for n, v in vocabs.items() if n != name}).size
        assert cost["teachers"][name]["without"] == without
        assert cost["teachers"][name]["adds"] == cost["student_size"] - without
    assert [cost["teachers"][n]["adds"] for n in "abc"] == [1, 0, 1]   # x; -; v


@pytest.mark.slow
def test_report_union_cost_is_student_vocab_without_each_teacher(demo_report):
    from vocab.union import StudentVocab

    vocabs = {name: t[2] for name, t in demo_report["teachers"].items()}
    union = demo_report["report"]["union"]
    assert union["student_size"] == StudentVocab.build(vocabs).size
    for name in vocabs:
        without = StudentVocab.build({n: v for n, v in vocabs.items() if n != name}).size
        assert union["teachers"][name]["without"] == without
        assert union["teachers"][name]["adds"] == union["student_size"] - without
