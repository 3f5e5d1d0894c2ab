"""Readers of CoNLL-U, token<TAB>label and label<TAB>text files, label sets, every error path."""

import re

import pytest

from finetuning import data
from tests.finetuning.fixtures import BOUN, EWT, conllu_blocks, write_text, write_token_label

GOOD_CONLLU = """# sent_id = 1
# text = I can't go.
1	I	I	PRON	PRP	_	3	nsubj	_	_
2-3	can't	_	_	_	_	_	_	_	_
2	ca	can	AUX	MD	_	3	aux	_	_
3	n't	not	PART	RB	_	4	advmod	_	_
4	go	go	VERB	VB	_	0	root	_	_
4.1	went	go	VERB	VBD	_	_	_	4:conj	_
5	.	.	PUNCT	.	_	4	punct	_	_

# sent_id = 2
1	Yes	yes	INTJ	UH	_	0	root	_	_
"""


def test_bundled_slices_read_with_ud_upos_tags():
    for path, words, multiword in ((EWT, 4007, 59), (BOUN, 2630, 70)):
        read = data.read_conllu(str(path))
        assert len(read.sentences) == 200
        assert read.num_words == words and read.multiword_tokens == multiword
        labels = data.tagging_labels(read, iob2=False)
        assert set(labels) <= {"ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM",
                               "PART", "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X"}
        assert len(labels) >= 15
    first = data.read_conllu(str(EWT)).sentences[0]
    assert first.words == ("From", "the", "AP", "comes", "this", "story", ":")
    assert first.labels == ("ADP", "DET", "PROPN", "VERB", "DET", "NOUN", "PUNCT")
    assert first.lines == (5, 6, 7, 8, 9, 10, 11)  # four comment lines first


def test_conllu_skips_ranges_and_empty_nodes_and_keeps_line_numbers(tmp_path):
    read = data.read_conllu(write_text(tmp_path / "a.conllu", GOOD_CONLLU))
    assert [s.words for s in read.sentences] == [("I", "ca", "n't", "go", "."), ("Yes",)]
    assert read.sentences[0].labels == ("PRON", "AUX", "PART", "VERB", "PUNCT")
    assert read.sentences[0].lines == (3, 5, 6, 7, 9)
    assert (read.multiword_tokens, read.empty_nodes) == (1, 1)
    # No final blank line, CRLF line ends and a BOM are fine.
    crlf = "\ufeff" + GOOD_CONLLU.strip("\n").replace("\n", "\r\n")
    again = data.read_conllu(write_text(tmp_path / "b.conllu", crlf))
    assert again.sentences == read.sentences


@pytest.mark.parametrize("line,message", [
    ("1\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t_", "expected 10 tab-separated columns, got 9"),
    ("1\tI", "two columns: this looks like a token<TAB>label"),
    ("x\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t_\t_", "bad token id 'x'"),
    ("2\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t_\t_", "token id 2 where 1 was expected"),
    ("1\t\tI\tPRON\tPRP\t_\t3\tnsubj\t_\t_", "empty FORM"),
    ("1\tI\tI\t_\tPRP\t_\t3\tnsubj\t_\t_", "no UPOS"),
])
def test_conllu_malformed_lines_name_file_and_line(tmp_path, line, message):
    path = write_text(tmp_path / "bad.conllu", "# c\n" + line + "\n\n")
    with pytest.raises(data.DataError, match=re.escape(f"{path}:2: ") + ".*" + re.escape(message)):
        data.read_conllu(path)


def test_missing_blank_line_between_sentences_is_reported(tmp_path):
    text = GOOD_CONLLU.replace("\n\n# sent_id = 2\n", "\n")
    path = write_text(tmp_path / "glued.conllu", text)
    with pytest.raises(data.DataError, match=r":10: .*token id 1 where 6 was expected"):
        data.read_conllu(path)


def test_empty_missing_and_undecodable_files(tmp_path):
    for name, content in (("empty.conllu", ""), ("blank.tsv", "\n\n \n")):
        path = write_text(tmp_path / name, content)
        with pytest.raises(data.DataError, match=re.escape(f"{path}: the file is empty")):
            data.read_tagging(path)
    path = write_text(tmp_path / "comments.conllu", "# only\n# comments\n")
    with pytest.raises(data.DataError, match="no sentence"):
        data.read_conllu(path)
    with pytest.raises(data.DataError, match="no such file"):
        data.read_tagging(str(tmp_path / "absent.tsv"))
    bad = tmp_path / "latin1.tsv"
    bad.write_bytes("a\tO\n\nb\u00e9\tO\n".encode("latin-1"))
    with pytest.raises(data.DataError, match=re.escape(f"{bad}:3: not valid UTF-8")):
        data.read_token_label(str(bad))
    with pytest.raises(data.DataError, match="is a directory"):
        data.read_classification(str(tmp_path))


def test_token_label_reader(tmp_path):
    path = write_token_label(tmp_path / "a.tsv", [[("Ali", "B-PER"), ("geldi", "O")],
                                                  [("Ankara", "B-LOC")]])
    read = data.read_tagging(path)
    assert [s.words for s in read.sentences] == [("Ali", "geldi"), ("Ankara",)]
    assert [s.lines for s in read.sentences] == [(1, 2), (4,)]
    # Several blank lines between sentences are one boundary.
    text = "a\tX\n\n\n\nb\tY\n"
    assert len(data.read_tagging(write_text(tmp_path / "b.tsv", text)).sentences) == 2


@pytest.mark.parametrize("text,line,message", [
    ("a\tO\nb\n", 2, "expected token<TAB>label, got 1 tab-separated column"),
    ("a\tO\nb\tO\textra\n", 2, "got 3 tab-separated column"),
    ("a\tO\n\tO\n", 2, "empty token"),
    ("a\tO\nb\t \n", 2, "empty label"),
    ("a\tO\nb\tnot a tag\n", 2, "contains spaces: not a tag (is this a label<TAB>text"),
    ("# sent_id = 1\n1\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t_\t_\n", 1, "a CoNLL-U comment?"),
    ("1\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t_\t_\n", 1, "this looks like a CoNLL-U file"),
])
def test_token_label_errors_name_file_and_line(tmp_path, text, line, message):
    path = write_text(tmp_path / "bad.tsv", text)
    with pytest.raises(data.DataError, match=re.escape(f"{path}:{line}: ") + ".*"
                       + re.escape(message)):
        data.read_token_label(path)


def test_files_in_the_other_formats_are_recognised(tmp_path):
    # A CoNLL-U file given as token<TAB>label (format=tsv) and the other way round.
    conllu = write_text(tmp_path / "ud.txt", GOOD_CONLLU)
    with pytest.raises(data.DataError, match="looks like a CoNLL-U file"):
        data.read_tagging(conllu)
    tsv = write_token_label(tmp_path / "tags.conllu", [[("a", "X")]])
    with pytest.raises(data.DataError, match="looks like a token<TAB>label"):
        data.read_tagging(tsv)
    # A classification file (label<TAB>text without spaces, as Chinese reviews) as tagging.
    reviews = "".join(f"{'pos' if i % 2 else 'neg'}\t评论{i}很好\n" for i in range(150))
    path = write_text(tmp_path / "reviews.tsv", reviews)
    with pytest.raises(data.DataError, match="looks like a label<TAB>text classification"):
        data.read_tagging(path)
    # Tagging files as classification: blank lines, or (one sentence) tokens as labels.
    tagging = write_token_label(tmp_path / "t.tsv", [[("a", "X"), ("b", "Y")], [("c", "X")]])
    with pytest.raises(data.DataError, match=re.escape(f"{tagging}:3: blank line")):
        data.read_classification(tagging)
    one = write_text(tmp_path / "one.tsv", "".join(f"w{i}\tNOUN\n" for i in range(20)))
    with pytest.raises(data.DataError, match="looks like a token<TAB>label tagging file"):
        data.read_classification(one)
    with pytest.raises(data.DataError, match=r":1: .*got 9.*looks like a CoNLL-U file"):
        data.read_classification(write_text(tmp_path / "c.tsv", GOOD_CONLLU.split("\n", 2)[2]))
    with pytest.raises(data.DataError, match=r":1: .*a CoNLL-U comment"):
        data.read_classification(write_text(tmp_path / "d.tsv", GOOD_CONLLU))
    with pytest.raises(data.DataError, match="unknown tagging format 'json'"):
        data.read_tagging(tsv, format="json")


def test_classification_reader(tmp_path):
    path = write_text(tmp_path / "c.tsv", "pos\tgreat  film\nneg\tbad\tone\n")
    with pytest.raises(data.DataError, match=re.escape(f"{path}:2: expected label<TAB>text with "
                                                       "exactly one tab, got 2")):
        data.read_classification(path)
    path = write_text(tmp_path / "c.tsv", "pos\tgreat film\nneg\t worst \n")
    read = data.read_classification(path)
    assert [(e.label, e.text, e.line) for e in read.examples] == [
        ("pos", "great film", 1), ("neg", "worst", 2)]
    assert data.classification_labels(read) == ["neg", "pos"]
    for text, message in (("\tx\n", "empty label"), ("pos\t \n", "empty text"),
                          ("very pos\tx\n", "label 'very pos' contains spaces")):
        with pytest.raises(data.DataError, match=re.escape(f":1: {message}")):
            data.read_classification(write_text(tmp_path / "e.tsv", text))


def test_iob2_repair_and_errors(tmp_path):
    sentences = [[("a", "I-PER"), ("b", "I-PER"), ("c", "O"), ("d", "I-LOC")],
                 [("e", "B-PER"), ("f", "I-LOC"), ("g", "I-LOC"), ("h", "B-ORG"), ("i", "I-ORG")]]
    read = data.check_iob2(data.read_tagging(write_token_label(tmp_path / "n.tsv", sentences)))
    assert read.sentences[0].labels == ("B-PER", "I-PER", "O", "B-LOC")
    assert read.sentences[1].labels == ("B-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG")
    assert read.repaired == 3
    assert data.tagging_labels(read, iob2=True) == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG",
                                                    "B-PER", "I-PER"]
    for tag, hint in (("E-PER", "IOBES tags are not supported"), ("PER", "not IOB2"),
                      ("B-", "not IOB2")):
        path = write_token_label(tmp_path / "bad.tsv", [[("x", "O"), ("y", tag)]])
        with pytest.raises(data.DataError, match=re.escape(f"{path}:2: tag {tag!r}") + ".*"
                           + hint):
            data.check_iob2(data.read_tagging(path))


def test_dev_labels_must_occur_in_train(tmp_path):
    blocks = conllu_blocks(EWT)
    train = data.read_conllu(str(EWT))
    labels = data.tagging_labels(train, iob2=False)
    data.check_known_labels(train, labels, str(EWT))
    odd = blocks[0].replace("\tADP\t", "\tFOO\t", 1)
    dev_path = write_text(tmp_path / "dev.conllu", odd + "\n\n")
    with pytest.raises(data.DataError, match=re.escape(f"{dev_path}:5: label 'FOO' never occurs "
                                                       "in the training file")):
        data.check_known_labels(data.read_conllu(dev_path), labels, str(EWT))
    ner_train = data.read_tagging(write_token_label(tmp_path / "t.tsv", [[("a", "B-PER")]]))
    ner_labels = data.tagging_labels(ner_train, iob2=True)
    assert ner_labels == ["O", "B-PER", "I-PER"]  # I-PER known although train has only B-PER
    ner_dev = data.read_tagging(write_token_label(tmp_path / "d.tsv",
                                                  [[("a", "I-PER")], [("b", "B-LOC")]]))
    with pytest.raises(data.DataError, match=r"d.tsv:3: label 'B-LOC' never occurs"):
        data.check_known_labels(ner_dev, ner_labels, "t.tsv")
    classes = data.read_classification(write_text(tmp_path / "c.tsv", "a\tx\nb\ty\n"))
    other = data.read_classification(write_text(tmp_path / "o.tsv", "a\tx\nc\tz\n"))
    with pytest.raises(data.DataError, match=r"o.tsv:2: label 'c' never occurs"):
        data.check_known_labels(other, data.classification_labels(classes), "c.tsv")
