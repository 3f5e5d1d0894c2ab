"""Teacher folders on a non-local file system (TF's ram:// standing in for gs://), and the
folder-checking command."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from teacher_scoring.teachers import export
from teacher_scoring.teachers.loaders import LoaderError, load_teacher
from teacher_scoring.teachers.loaders.__main__ import describe
from tests.conftest import REPO_ROOT, trained_vocab
from tests.teacher_scoring.teachers.test_teacher_core import make_inputs, model_inputs, random_bert


def _copy_tree(local: str, remote: str) -> str:
    for root, _, files in os.walk(local):
        target = remote + root[len(local):]
        tf.io.gfile.makedirs(target)
        for name in files:
            tf.io.gfile.copy(os.path.join(root, name), f"{target}/{name}", overwrite=True)
    return remote


@pytest.fixture(scope="module")
def local_teacher(tmp_path_factory):
    vocab = trained_vocab("tr", 600)
    model, _ = random_bert(len(vocab), seed=12)
    return model, vocab, tmp_path_factory.mktemp("remote")


@pytest.mark.parametrize("format_name", ["google_bert_checkpoint", "hf_folder", "tfm_checkpoint",
                                         "saved_model"])
def test_folders_on_a_remote_file_system(local_teacher, format_name):
    model, vocab, root = local_teacher
    local = str(root / format_name)
    if format_name == "saved_model":
        teacher = load_teacher(export.export_hf_folder(
            model.encoder_network, model.masked_lm, vocab, str(root / "hf_for_sm"),
            lower_case=False, languages=["tr"]))
        export.export_saved_model(teacher, local)
    else:
        export.export_teacher(load_teacher(export.export_hf_folder(
            model.encoder_network, model.masked_lm, vocab, str(root / f"hf_{format_name}"),
            lower_case=False, languages=["tr"])), local, format_name)
    remote = _copy_tree(local, f"ram://teachers/{format_name}")
    teacher = load_teacher(remote)
    assert (teacher.format, teacher.path, teacher.languages) == (format_name, remote, ("tr",))
    batch = model_inputs(make_inputs(len(vocab), seed=1))
    np.testing.assert_allclose(teacher.mlm_logits(**batch).numpy(),
                               model(batch, training=False)["mlm_logits"].numpy(),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(LoaderError, match="ram://teachers/nowhere: no such file"):
        load_teacher("ram://teachers/nowhere")


def test_describe(local_teacher):
    model, vocab, root = local_teacher
    folder = export.export_hf_folder(model.encoder_network, model.masked_lm, vocab,
                                     str(root / "described"), lower_case=False,
                                     languages=["tr"], name="tr_tiny")
    text = describe(folder, text="Herkes [MASK] hakkına sahiptir [MASK].", top_k=3)
    assert "teacher      tr_tiny" in text and "format       hf_folder" in text
    assert "casing       cased" in text and "languages    tr" in text
    assert text.count("[MASK] ") == 2


def test_command_reports_bad_folders(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    result = subprocess.run([sys.executable, "-m", "teacher_scoring.teachers.loaders", str(tmp_path)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 1
    assert f"error: {tmp_path}/vocab.txt: missing" in result.stderr
