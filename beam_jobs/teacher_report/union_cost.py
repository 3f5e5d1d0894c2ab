"""What the union costs: the student vocabulary is the union of every teacher of the config
(`vocab.union.StudentVocab`); its size, and per teacher the size built without it. The
difference is the number of tokens only that teacher brings: the student's embedding rows it
costs, what dropping it would save.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from vocab.union import StudentVocab


def union_cost(vocabs: Mapping[str, Sequence[str]]) -> dict:
    """The student vocabulary with all teachers and without each one (vocab.union.StudentVocab).

    Args:
      vocabs: teacher name → tokens, in the union's order (the config's teacher order).

    Returns:
      {student_size, teachers: {name: {vocab_size, without, adds}}, pairwise, shared_by_all}:
      `without` is the student size built without that teacher (None with a single teacher) and
      `adds` = student_size − without, the tokens only that teacher brings.
    """
    full = StudentVocab.build(dict(vocabs))
    report = full.report
    teachers = {}
    for name, tokens in vocabs.items():
        others = {n: v for n, v in vocabs.items() if n != name}
        without = StudentVocab.build(others).size if others else None
        teachers[name] = {"vocab_size": len(tokens), "without": without,
                          "adds": full.size - without if without is not None else full.size}
    return {"student_size": full.size, "teachers": teachers, "pairwise": report["pairwise"],
            "shared_by_all": report["shared_by_all"]}
