"""Readers of the downstream data formats, and the label sets fine-tuning uses.

Three formats (see ../shared/downstream/README.md for the data sets):

  CoNLL-U (`.conllu`)     UD treebanks. One word a line, 10 tab-separated columns; FORM is
                          column 2, UPOS column 4. Multiword-token ranges (`6-7`) and empty
                          nodes (`8.1`) are skipped (they are not syntactic words); `#` lines are
                          comments; a blank line ends a sentence.
  token<TAB>label         one token a line, a blank line between sentences (the CoNLL / WikiANN
                          layout): POS tags, or NER tags in IOB2 (`O`, `B-PER`, `I-PER`, ...).
  label<TAB>text          sentence classification, one example a line.

Every reader is strict: a line that does not fit its format raises `DataError` naming the file
and the line (a malformed CoNLL-U line, a token id out of sequence, a missing UPOS, a file in
another of the three formats, an empty file, undecodable UTF-8). Nothing is dropped silently.

IOB2 (NER). Tags must be `O`, `B-TYPE` or `I-TYPE`; any other tag (IOBES `E-`/`S-`, a bare
`PER`) is an error. An `I-TYPE` that does not continue an entity of the same type (after `O`,
after another type, at the start of a sentence) is ill-formed IOB2 (it is IOB1). It is
*converted* to `B-TYPE` and counted (`NerFile.repaired`, reported by the fine-tuning command):
that is exactly how seqeval's default mode (and conlleval) reads such a tag, so the entities
scored are unchanged, and the model is trained on the tag that marks an entity's start.

Label sets come from the training file only: POS and classification labels are the sorted set
of train labels; the NER set is `O` plus `B-`/`I-` of every entity type that train has. A label
in a dev or test file that the training file never had is an error naming that file and line.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Sequence

import tensorflow as tf

CONLLU = "conllu"
TOKEN_LABEL = "tsv"
TAGGING_FORMATS = (CONLLU, TOKEN_LABEL)

_CONLLU_COLUMNS = 10
_INTEGER_ID = re.compile(r"^[1-9][0-9]*$")
_RANGE_ID = re.compile(r"^[1-9][0-9]*-[1-9][0-9]*$")
_EMPTY_NODE_ID = re.compile(r"^[0-9]+\.[1-9][0-9]*$")
_IOB2_TAG = re.compile(r"^[BI]-\S+$")


class DataError(ValueError):
    """A data file does not fit its format; the message names the file and the line."""


@dataclasses.dataclass(frozen=True)
class TaggedSentence:
    """One sentence of a tagging file.

    Attributes:
      words: the words (CoNLL-U FORMs, or the token column).
      labels: one label per word.
      lines: the 1-based line number of each word in its file.
    """

    words: tuple[str, ...]
    labels: tuple[str, ...]
    lines: tuple[int, ...]

    @property
    def line(self) -> int:
        """The line of the sentence's first word."""
        return self.lines[0]


@dataclasses.dataclass(frozen=True)
class TextExample:
    """One line of a classification file: its text, its label and its 1-based line number."""

    text: str
    label: str
    line: int


@dataclasses.dataclass(frozen=True)
class TaggingFile:
    """The sentences of a tagging file, with what the reader skipped or converted.

    Attributes:
      path: the file.
      sentences: the sentences, in file order.
      multiword_tokens: CoNLL-U multiword-token range lines skipped (their words are read).
      empty_nodes: CoNLL-U empty-node lines skipped.
      repaired: NER only: ill-formed IOB2 `I-` tags converted to `B-` (see module docstring).
    """

    path: str
    sentences: list[TaggedSentence]
    multiword_tokens: int = 0
    empty_nodes: int = 0
    repaired: int = 0

    @property
    def num_words(self) -> int:
        return sum(len(s.words) for s in self.sentences)


@dataclasses.dataclass(frozen=True)
class ClassificationFile:
    """The examples of a `label<TAB>text` file."""

    path: str
    examples: list[TextExample]


# ----------------------------------------------------------------------------------------------
# Low-level reading.


def _read_lines(path: str) -> list[str]:
    """The file's lines (without line terminators); errors name the file (and line for UTF-8)."""
    if not tf.io.gfile.exists(path):
        raise DataError(f"{path}: no such file")
    if tf.io.gfile.isdir(path):
        raise DataError(f"{path}: is a directory, expected a data file")
    with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 ({error.reason} at byte "
                        f"{error.start})") from error
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise DataError(f"{path}: the file is empty")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def detect_tagging_format(path: str,
                          format: str = "auto") -> str:  # pylint: disable=redefined-builtin
    """The tagging format of a file: `format` if given, else from the extension (.conllu)."""
    if format == "auto":
        return CONLLU if path.endswith(".conllu") else TOKEN_LABEL
    if format not in TAGGING_FORMATS:
        raise DataError(f"{path}: unknown tagging format {format!r}; known: "
                        f"{list(TAGGING_FORMATS)} or 'auto'")
    return format


# ----------------------------------------------------------------------------------------------
# CoNLL-U.


def read_conllu(path: str) -> TaggingFile:
    """Reads the words (FORM) and UPOS tags of a CoNLL-U file.

    Raises:
      DataError: naming the file and line: a line without 10 columns (with a hint when it looks
        like `token<TAB>label` or `label<TAB>text`), a bad or out-of-sequence token id, an empty
        FORM, a missing UPOS (`_`), or no sentence at all.
    """
    sentences: list[TaggedSentence] = []
    words: list[str] = []
    labels: list[str] = []
    lines: list[int] = []
    multiword = empty_nodes = 0

    def close_sentence():
        nonlocal words, labels, lines
        if words:
            sentences.append(TaggedSentence(tuple(words), tuple(labels), tuple(lines)))
        words, labels, lines = [], [], []

    for number, line in enumerate(_read_lines(path), start=1):
        where = f"{path}:{number}"
        if not line.strip():
            close_sentence()
            continue
        if line.startswith("#"):
            continue
        columns = line.split("\t")
        if len(columns) != _CONLLU_COLUMNS:
            hint = ""
            if len(columns) == 2:
                hint = (" (two columns: this looks like a token<TAB>label or label<TAB>text "
                        "file, not CoNLL-U)")
            raise DataError(f"{where}: malformed CoNLL-U line: expected {_CONLLU_COLUMNS} "
                            f"tab-separated columns, got {len(columns)}{hint}: {line[:80]!r}")
        token_id, form, upos = columns[0], columns[1], columns[3]
        if _RANGE_ID.match(token_id):
            multiword += 1
            continue
        if _EMPTY_NODE_ID.match(token_id):
            empty_nodes += 1
            continue
        if not _INTEGER_ID.match(token_id):
            raise DataError(f"{where}: malformed CoNLL-U line: bad token id {token_id!r} "
                            "(expected N, N-M or N.M)")
        if int(token_id) != len(words) + 1:
            raise DataError(f"{where}: malformed CoNLL-U line: token id {token_id} where "
                            f"{len(words) + 1} was expected (a missing blank line between "
                            "sentences?)")
        if not form:
            raise DataError(f"{where}: malformed CoNLL-U line: empty FORM (column 2)")
        if not upos or upos == "_" or upos != upos.strip():
            raise DataError(f"{where}: malformed CoNLL-U line: no UPOS (column 4 is {upos!r})")
        words.append(form)
        labels.append(upos)
        lines.append(number)
    close_sentence()
    if not sentences:
        raise DataError(f"{path}: no sentence (only comments / blank lines)")
    return TaggingFile(path, sentences, multiword_tokens=multiword, empty_nodes=empty_nodes)


# ----------------------------------------------------------------------------------------------
# token<TAB>label.


def read_token_label(path: str) -> TaggingFile:
    """Reads a `token<TAB>label` file (a blank line between sentences).

    Raises:
      DataError: naming the file and line: a line that is not exactly `token<TAB>label` (with a
        hint for CoNLL-U lines), an empty token or label, a label with spaces, a file that looks
        like `label<TAB>text` (more distinct labels than distinct tokens), or no sentence.
    """
    sentences: list[TaggedSentence] = []
    words: list[str] = []
    labels: list[str] = []
    lines: list[int] = []

    def close_sentence():
        nonlocal words, labels, lines
        if words:
            sentences.append(TaggedSentence(tuple(words), tuple(labels), tuple(lines)))
        words, labels, lines = [], [], []

    label_lines: dict[str, int] = {}
    tokens: set[str] = set()
    for number, line in enumerate(_read_lines(path), start=1):
        where = f"{path}:{number}"
        if not line.strip():
            close_sentence()
            continue
        columns = line.split("\t")
        if len(columns) == _CONLLU_COLUMNS:
            raise DataError(f"{where}: {_CONLLU_COLUMNS} tab-separated columns: this looks like a "
                            "CoNLL-U file (name it .conllu or pass format=conllu), expected "
                            "token<TAB>label")
        if len(columns) != 2:
            hint = (" (a CoNLL-U comment? this looks like a CoNLL-U file)"
                    if line.startswith("# ") and "=" in line else "")
            raise DataError(f"{where}: expected token<TAB>label, got {len(columns)} "
                            f"tab-separated column(s){hint}: {line[:80]!r}")
        token, label = columns[0].strip(), columns[1].strip()
        if not token:
            raise DataError(f"{where}: empty token (column 1)")
        if not label:
            raise DataError(f"{where}: empty label (column 2)")
        if any(c.isspace() for c in label):
            raise DataError(f"{where}: label {label[:60]!r} contains spaces: not a tag (is this "
                            "a label<TAB>text classification file?)")
        words.append(token)
        labels.append(label)
        lines.append(number)
        tokens.add(token)
        label_lines.setdefault(label, number)
    close_sentence()
    if not sentences:
        raise DataError(f"{path}: no sentence (only blank lines)")
    if len(label_lines) > 100 and len(label_lines) > len(tokens):
        raise DataError(f"{path}: {len(label_lines)} distinct labels but only {len(tokens)} "
                        "distinct tokens: this looks like a label<TAB>text classification file, "
                        "not token<TAB>label")
    return TaggingFile(path, sentences)


def read_tagging(path: str,
                 format: str = "auto") -> TaggingFile:  # pylint: disable=redefined-builtin
    """Reads a tagging file in `format` (CONLLU, TOKEN_LABEL, or "auto": by extension)."""
    if detect_tagging_format(path, format) == CONLLU:
        return read_conllu(path)
    return read_token_label(path)


# ----------------------------------------------------------------------------------------------
# IOB2.


def check_iob2(tagging_file: TaggingFile) -> TaggingFile:
    """Validates IOB2 tags; converts ill-formed `I-` tags to `B-` (counted in `.repaired`).

    Raises:
      DataError: a tag that is neither `O` nor `B-TYPE` / `I-TYPE`, naming file and line.
    """
    repaired = 0
    sentences = []
    for sentence in tagging_file.sentences:
        labels = list(sentence.labels)
        previous = "O"
        for i, tag in enumerate(labels):
            if tag != "O" and not _IOB2_TAG.match(tag):
                hint = (" (IOBES tags are not supported: convert to IOB2)"
                        if tag[:2] in ("E-", "S-") else "")
                raise DataError(f"{tagging_file.path}:{sentence.lines[i]}: tag {tag!r} is not "
                                f"IOB2 (O, B-TYPE or I-TYPE){hint}")
            if tag.startswith("I-") and previous[2:] != tag[2:]:
                tag = "B-" + tag[2:]
                labels[i] = tag
                repaired += 1
            previous = tag
        sentences.append(dataclasses.replace(sentence, labels=tuple(labels)))
    return dataclasses.replace(tagging_file, sentences=sentences,
                               repaired=tagging_file.repaired + repaired)


# ----------------------------------------------------------------------------------------------
# label<TAB>text.


def read_classification(path: str) -> ClassificationFile:
    """Reads a `label<TAB>text` file, one example a line.

    Raises:
      DataError: naming the file and line: a blank line (hint: a token<TAB>label file), a line
        without exactly one tab (hint for CoNLL-U lines), an empty label or text, a label with
        spaces, a file with more distinct labels than distinct texts (hint: token<TAB>label),
        or no example.
    """
    examples = []
    for number, line in enumerate(_read_lines(path), start=1):
        where = f"{path}:{number}"
        if not line.strip():
            raise DataError(f"{where}: blank line: a label<TAB>text file has one example a line "
                            "(blank lines separate sentences in token<TAB>label tagging files)")
        tabs = line.count("\t")
        if tabs != 1:
            hint = (": this looks like a CoNLL-U file" if tabs == _CONLLU_COLUMNS - 1 else
                    " (a CoNLL-U comment? this looks like a CoNLL-U file)"
                    if line.startswith("# ") and "=" in line else "")
            raise DataError(f"{where}: expected label<TAB>text with exactly one tab, got {tabs}"
                            f"{hint}: {line[:80]!r}")
        label, text = (column.strip() for column in line.split("\t"))
        if not label:
            raise DataError(f"{where}: empty label (column 1)")
        if any(c.isspace() for c in label):
            raise DataError(f"{where}: label {label[:60]!r} contains spaces (expected "
                            "label<TAB>text, label first)")
        if not text:
            raise DataError(f"{where}: empty text (column 2)")
        examples.append(TextExample(text, label, number))
    labels = {e.label for e in examples}
    texts = {e.text for e in examples}
    if len(labels) > 1 and len(labels) > len(texts):
        raise DataError(f"{path}: {len(labels)} distinct labels but only {len(texts)} distinct "
                        "texts: this looks like a token<TAB>label tagging file, not "
                        "label<TAB>text")
    return ClassificationFile(path, examples)


# ----------------------------------------------------------------------------------------------
# Label sets.


def tagging_labels(train: TaggingFile, iob2: bool) -> list[str]:
    """The label list (id = index) of a tagging task, from its training file.

    POS: the sorted train labels. NER (`iob2=True`): `O`, then `B-T`, `I-T` for every entity
    type T of train, sorted by type.
    """
    found = {label for s in train.sentences for label in s.labels}
    if not iob2:
        return sorted(found)
    types = sorted({label[2:] for label in found if label != "O"})
    return ["O"] + [f"{prefix}-{t}" for t in types for prefix in ("B", "I")]


def classification_labels(train: ClassificationFile) -> list[str]:
    """The sorted labels of a classification training file (id = index)."""
    return sorted({e.label for e in train.examples})


def check_known_labels(data: TaggingFile | ClassificationFile, labels: Sequence[str],
                       train_path: str) -> None:
    """Raises DataError at the first label of `data` that is not in `labels` (from train)."""
    known = set(labels)
    if isinstance(data, ClassificationFile):
        items = ((e.line, e.label) for e in data.examples)
    else:
        items = ((line, label) for s in data.sentences for line, label in zip(s.lines, s.labels))
    for line, label in items:
        if label not in known:
            shown = ", ".join(sorted(known)[:40])
            raise DataError(f"{data.path}:{line}: label {label!r} never occurs in the training "
                            f"file {os.path.basename(train_path)} ({train_path}); known labels: "
                            f"{shown}")
