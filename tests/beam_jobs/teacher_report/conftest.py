"""The teacher report's end-to-end fixture: two demo-like teachers with real vocabularies and
random weights (English served by both, German by one), a scoring config, and one report made by
`pipeline.run_report` that the slow tests of this package share (built once)."""

import collections

import pytest
import yaml

from beam_jobs.teacher_report import pipeline
from beam_jobs.teacher_report.sample import sample_documents
from teacher_scoring.examples.tokenization import TeacherTokenizer
from tests.conftest import demo_lines

S, P, K = 64, 10, 8
SAMPLE = 90


@pytest.fixture(scope="package")
def demo_report(tmp_path_factory):
    """Two demo-like teachers with real vocabularies and random weights (as
    beam_jobs.make_demo_workspace makes): en_cased (HF folder) serves en; ende_uncased
    (Google-BERT checkpoint, a smaller alphabet so it has [UNK]s) serves en and de."""
    from tests.beam_jobs.conftest import make_teacher
    from vocab.train_wordpiece import train_wordpiece

    root = tmp_path_factory.mktemp("teacher_report")
    en, de = demo_lines("en", 150), demo_lines("de", 70)
    teachers = {
        "en_cased": ("hf_folder", ["en"], train_wordpiece(en, 700, False), False),
        "ende_uncased": ("google_bert_checkpoint", ["en", "de"],
                         train_wordpiece(en + de, 900, True, limit_alphabet=40), True),
    }
    for seed, (name, (fmt, langs, vocab, lower)) in enumerate(teachers.items()):
        make_teacher(root / "teachers" / name, fmt, vocab, lower, langs, name, seed=seed,
                     max_positions=S)
    corpora = {}
    for language, lines in (("en", en), ("de", de)):
        corpora[language] = root / f"{language}.txt"
        corpora[language].write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    config_path = root / "scoring.yaml"
    config_path.write_text(yaml.safe_dump({
        "student_vocab": str(root / "vocab"), "output_dir": str(root / "scored"),
        "seq_length": S, "max_predictions_per_seq": P, "top_k": K, "masked_lm_prob": 0.15,
        "whole_word_masking": True, "seed": 1234, "logits_dtype": "float32", "compression": "",
        "copies_mode": "best", "inference_batch_size": 16, "document_batch_size": 16,
        "languages": {lang: {"corpus": [str(path)], "num_shards": 1}
                      for lang, path in corpora.items()},
        "teachers": {name: {"format": fmt, "path": str(root / "teachers" / name),
                            "languages": langs}
                     for name, (fmt, langs, _, _) in teachers.items()}}))
    from beam_jobs import job_config

    config = job_config.load_job_config(str(config_path))
    out = root / "report"
    report = pipeline.run_report(config, str(out), sample_paragraphs=SAMPLE,
                                 bootstrap_samples=300)
    return {"root": root, "config": config, "config_path": config_path, "out": out,
            "report": report, "teachers": teachers, "corpora": corpora}


def examples_outside_beam(demo, language):
    """The sampled documents' masked copies built outside Beam (create_examples: the shared
    masking of a language with several teachers)."""
    from beam_jobs.build_examples import masking_config
    from teacher_scoring.examples import create_examples as create_examples_lib
    config = demo["config"]
    lines = demo["corpora"][language].read_bytes().split(b"\n")
    sample = sample_documents(lines, SAMPLE, config.seed)
    tokenizers = {t: TeacherTokenizer(demo["teachers"][t][2], demo["teachers"][t][3])
                  for t in config.teachers_of(language)}
    copies = collections.defaultdict(dict)
    for example in create_examples_lib.create_examples(sample, language, tokenizers,
                                                       masking_config(config)):
        if example.num_predictions:
            copies[example.example_id][example.teacher] = example
    return sample, tokenizers, copies
