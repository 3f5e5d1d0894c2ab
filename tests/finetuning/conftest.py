"""Session fixtures: tiny teachers (en uncased, tr cased) and a tiny student export over their
union vocabulary, with its tokenizer. Do not modify them in tests."""

import pytest

from tests.finetuning import fixtures


@pytest.fixture(scope="session")
def teacher_folders(tmp_path_factory) -> dict[str, str]:
    """language -> teacher folder (en: tfm_checkpoint, uncased, exact GELU; tr: Google
    checkpoint, cased, tanh GELU as original BERT)."""
    root = tmp_path_factory.mktemp("teachers")
    return {"en": fixtures.make_teacher(root / "en", "en", "tfm_checkpoint", lower_case=True),
            "tr": fixtures.make_teacher(root / "tr", "tr", "google_bert_checkpoint",
                                        lower_case=False, seed=1, hidden_act="gelu_tanh")}


@pytest.fixture(scope="session")
def student_export(tmp_path_factory):
    """(export_dir, pretrainer): a student over teachers en_t (en, uncased), tr_t (tr, cased)."""
    return fixtures.make_student_export(tmp_path_factory.mktemp("student"),
                                        {"en_t": ("en", True), "tr_t": ("tr", False)})
