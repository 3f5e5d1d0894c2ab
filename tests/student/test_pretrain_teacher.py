"""Tests for student.pretrain_teacher: a real small teacher, trained and loaded back."""

import numpy as np
import pytest

from teacher_scoring.teachers import loaders
from student import pretrain_teacher as pretrain_lib
from teacher_scoring.examples.tokenization import read_vocab
from teacher_scoring.records import manifest as manifest_lib
from tests.conftest import CORPORA, REPO_ROOT


def _corpus(tmp_path, lines=400):
    text = (CORPORA / "demo" / "de.txt").read_text(encoding="utf-8").split("\n")[:lines]
    path = tmp_path / "de.txt"
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["hf_folder", "google_bert_checkpoint"])
def test_pretrain_export_and_load_back(tmp_path, fmt):
    corpus = _corpus(tmp_path)
    result = pretrain_lib.pretrain_teacher(
        name="tiny_de", language="de", corpus=[corpus], work_dir=str(tmp_path / "work"),
        output_dir=str(tmp_path / "teacher"),
        config_file=str(REPO_ROOT / "configs/teacher/tiny.yaml"),
        params_override=["train.steps=300"], lower_case=False, vocab_size=600, fmt=fmt,
        num_shards=2)
    # The exported folder reproduces the trained model (checked inside, reported here).
    assert result.reload_max_abs_diff <= 1e-4
    assert result.steps == 300
    # Plain MLM actually learned: the loss starts near the uniform guess ln(V) and falls clearly.
    assert result.first_loss == pytest.approx(np.log(result.vocab_size), abs=0.5)
    assert result.last_loss < result.first_loss - 0.25

    teacher = loaders.load_teacher(result.teacher_dir)
    assert teacher.name == "tiny_de"
    assert teacher.languages == ["de"] or list(teacher.languages) == ["de"]
    assert teacher.lower_case is False
    assert teacher.vocab == read_vocab(result.vocab_path)
    assert len(teacher.vocab) <= 600
    assert loaders.detect_format(result.teacher_dir) == fmt


def test_refuses_a_non_empty_output_folder_before_any_work(tmp_path):
    out = tmp_path / "teacher"
    out.mkdir()
    (out / "something").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        pretrain_lib.pretrain_teacher(
            name="t", language="de", corpus=[str(tmp_path / "nothing.txt")],
            work_dir=str(tmp_path / "work"), output_dir=str(out),
            config_file=str(REPO_ROOT / "configs/teacher/tiny.yaml"))
    assert not (tmp_path / "work").exists()


def test_unknown_export_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--format"):
        pretrain_lib.pretrain_teacher(
            name="t", language="de", corpus=["x"], work_dir=str(tmp_path / "w"),
            output_dir=str(tmp_path / "o"), config_file=None, fmt="onnx")


@pytest.mark.slow
def test_blank_line_documents_are_packed_and_a_reuse_must_read_the_same_format(tmp_path):
    lines = (CORPORA / "demo" / "de.txt").read_text(encoding="utf-8").split("\n")[:240]
    # 24 documents of 10 short lines each, separated by blank lines (BERT's format).
    text = "\n\n".join("\n".join(lines[i:i + 10]) for i in range(0, 240, 10))
    corpus = tmp_path / "de_docs.txt"
    corpus.write_text(text + "\n", encoding="utf-8")
    common = dict(name="tiny_de", language="de", corpus=[str(corpus)],
                  config_file=str(REPO_ROOT / "configs/teacher/tiny.yaml"),
                  params_override=["train.steps=2"], vocab_size=400, num_shards=1)
    packed = pretrain_lib.pretrain_teacher(
        work_dir=str(tmp_path / "packed"), output_dir=str(tmp_path / "teacher_packed"),
        document_format="blank_line", **common)
    by_line = pretrain_lib.pretrain_teacher(
        work_dir=str(tmp_path / "by_line"), output_dir=str(tmp_path / "teacher_by_line"),
        **common)
    packed_manifest = manifest_lib.read_manifest(packed.shards_dir)
    line_manifest = manifest_lib.read_manifest(by_line.shards_dir)
    assert packed_manifest.config["document_format"] == "blank_line"
    assert packed_manifest.counters["documents"] == 24
    # In `line` format each line is a document; the 23 blank separators are dropped as empty.
    assert line_manifest.counters["documents"] == 240 + 23
    assert line_manifest.dropped["empty"] == 23
    # Lines of a document share sequences: fewer, fuller examples.
    assert packed.examples < by_line.examples
    with pytest.raises(ValueError, match="'config.document_format' is 'blank_line' but this "
                                         "run reads 'line'"):
        pretrain_lib.pretrain_teacher(work_dir=str(tmp_path / "packed"),
                                      output_dir=str(tmp_path / "again"), **common)
    with pytest.raises(ValueError, match="document_format must be one of"):
        pretrain_lib.pretrain_teacher(work_dir=str(tmp_path / "x"),
                                      output_dir=str(tmp_path / "y"), document_format="page",
                                      **common)
