"""Teacher vocabularies → the student vocabulary (their union) and teacher → student id maps.

  vocab.union.StudentVocab     build / save / load the union and its maps (docs/vocab.md)
  vocab.build_union            CLI: python -m vocab.build_union --teacher en=vocab.txt ... --output DIR
  vocab.train_wordpiece        CLI + function: train a teacher-style WordPiece vocab.txt from text
"""

from vocab.union import (NO_STUDENT_ID, SPECIAL_IDS, StudentVocab, StudentVocabError,
                         TeacherInfo, is_unused_token)

__all__ = ["NO_STUDENT_ID", "SPECIAL_IDS", "StudentVocab", "StudentVocabError", "TeacherInfo",
           "is_unused_token"]
