"""A small real workspace for the scoring-job tests: three tiny BERT teachers in three folder
formats (two for English, one for German), the student vocab, and corpora from the bundled demo
text."""

import dataclasses
import pathlib

import pytest
import tensorflow as tf
import yaml

from tests.conftest import demo_lines, trained_vocab

S, P, K = 64, 10, 8


@dataclasses.dataclass
class Workspace:
    root: pathlib.Path
    vocab_dir: pathlib.Path
    teachers: dict            # name -> (path, format, languages, vocab, lower_case)
    corpora: dict             # lang -> path

    def config(self, output_dir, **changes) -> dict:
        data = {
            "student_vocab": str(self.vocab_dir),
            "output_dir": str(output_dir),
            "seq_length": S, "max_predictions_per_seq": P, "top_k": K,
            "masked_lm_prob": 0.15, "whole_word_masking": True, "seed": 1234,
            "logits_dtype": "float32", "compression": "GZIP", "copies_mode": "best",
            "inference_batch_size": 16, "document_batch_size": 16,
            "languages": {"en": {"corpus": [str(self.corpora["en"])], "num_shards": 2},
                          "de": {"corpus": [str(self.corpora["de"])], "num_shards": 1}},
            "teachers": {name: {"format": fmt, "path": str(path), "languages": list(langs)}
                         for name, (path, fmt, langs, _, _) in self.teachers.items()},
        }
        data.update(changes)
        return data

    def write_config(self, path, output_dir, **changes) -> str:
        pathlib.Path(path).write_text(yaml.safe_dump(self.config(output_dir, **changes)))
        return str(path)


def make_teacher(path, fmt, vocab, lower_case, languages, name, hidden=32, layers=2,
                 max_positions=S, seed=0, initializer_range=1.0):
    """Builds a random tiny BERT MLM over `vocab` and exports it in format `fmt`."""
    from teacher_scoring.teachers import export
    from teacher_scoring.teachers.loaders import bert_mlm

    tf.keras.utils.set_random_seed(seed)
    config = bert_mlm.BertMLMConfig(
        vocab_size=len(vocab), hidden_size=hidden, num_layers=layers,
        num_attention_heads=2, intermediate_size=2 * hidden,
        max_position_embeddings=max_positions, initializer_range=initializer_range)
    model = bert_mlm.build_bert_mlm(config)
    writers = {"hf_folder": export.export_hf_folder,
               "google_bert_checkpoint": export.export_google_bert_checkpoint,
               "tfm_checkpoint": export.export_tfm_checkpoint}
    writers[fmt](model.encoder_network, model.masked_lm, vocab, str(path),
                 lower_case=lower_case, languages=languages, name=name)
    return path


@pytest.fixture(autouse=True)
def _no_teachers_held_across_tests():
    """A test that prepares a job without running it leaves its teachers in the process
    (beam_jobs.loaded_teachers), possibly from a monkeypatched loader: drop them."""
    yield
    from beam_jobs import loaded_teachers
    loaded_teachers.clear()


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Workspace:
    from vocab.union import StudentVocab

    root = tmp_path_factory.mktemp("scoring_ws")
    specs = {
        "en_a": ("hf_folder", ("en",), trained_vocab("en", 1200, False), False, 1),
        "en_b": ("google_bert_checkpoint", ("en",), trained_vocab("en", 900, True), True, 2),
        "de_a": ("tfm_checkpoint", ("de",), trained_vocab("de", 1000, False), False, 3),
    }
    teachers = {}
    for name, (fmt, langs, vocab, lower_case, seed) in specs.items():
        path = root / "teachers" / name
        make_teacher(path, fmt, vocab, lower_case, list(langs), name, seed=seed)
        teachers[name] = (path, fmt, langs, vocab, lower_case)
    vocab_dir = root / "vocab"
    StudentVocab.build({name: t[3] for name, t in teachers.items()}).save(str(vocab_dir))
    corpora = {}
    for lang, n in (("en", 120), ("de", 60)):
        path = root / "corpora" / f"{lang}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(demo_lines(lang, n)) + "\n", encoding="utf-8")
        corpora[lang] = path
    return Workspace(root=root, vocab_dir=vocab_dir, teachers=teachers, corpora=corpora)
