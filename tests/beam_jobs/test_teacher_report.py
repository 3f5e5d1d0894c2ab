"""The teacher report: vocabulary fit, shared-mask masked-LM figures with bootstrap intervals,
`best` win rates, top-k agreement, the union's cost, the recommendation rule, the Beam run on
demo-like teachers (two for English, one of them also serving German), and bad input."""

import collections
import json
import pathlib
import subprocess
import sys

import apache_beam as beam
import numpy as np
import pytest
import yaml
from apache_beam.testing.util import assert_that, equal_to

from beam_jobs import teacher_report as tr
from teacher_scoring.records.record_schema import ScoredExample
from teacher_scoring.examples.tokenization import TeacherTokenizer, clean_text
from tests.conftest import demo_lines

REPO = pathlib.Path(__file__).resolve().parents[2]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


# ------------------------------------------------------------------------ vocabulary fit


def _fit(texts, vocab, lower_case):
    tokenizer = TeacherTokenizer(vocab, lower_case)
    cleaned = [clean_text(t) for t in texts]
    return tr.fit_counts(cleaned, tokenizer.tokenize_with_offsets(cleaned), tokenizer)


def test_fit_counts_hand_computed():
    vocab = SPECIALS + ["hello", "world", "##s", ",", "wor", "##ld"]
    counts = _fit(["hello worlds, über x", "hello  hello"], vocab, lower_case=False)
    # Words: hello | worlds, | über | x  and  hello | hello.
    # Pieces: hello | world ##s , | [UNK] | [UNK]  and  hello | hello.
    assert counts.documents == 2
    assert counts.words == 6
    assert counts.pieces == 8
    assert counts.unk_pieces == 2
    assert counts.unk_words == 2
    assert counts.whole_words == 3                 # the three "hello" (an [UNK] is not whole)
    assert counts.characters == 5 + 7 + 4 + 1 + 10
    assert counts.uncovered_characters == 4 + 1    # "über" and "x"
    assert counts.missing_characters == collections.Counter("übrex")  # "e" only inside hello
    figures = counts.figures()
    assert figures["unk_word_rate"] == pytest.approx(2 / 6)
    assert figures["unk_piece_rate"] == pytest.approx(2 / 8)
    assert figures["fertility"] == pytest.approx(8 / 6)
    assert figures["whole_word_rate"] == pytest.approx(3 / 6)
    assert figures["uncovered_character_rate"] == pytest.approx(5 / 27)


def test_fit_counts_uncased_teacher_and_merge():
    vocab = SPECIALS + ["hello", "uber", "##s"]
    # Uncased: "Über" → "uber" (a whole word); "Hellos" → hello ##s; "ß" stays [UNK].
    counts = _fit(["Hellos Über ß"], vocab, lower_case=True)
    assert (counts.words, counts.pieces, counts.unk_words, counts.whole_words) == (3, 4, 1, 1)
    assert counts.uncovered_characters == 1
    assert counts.missing_characters == collections.Counter("ß")
    merged = tr.FitCounts.from_dict(counts.to_dict()).merge(counts)
    assert merged.words == 6 and merged.missing_characters["ß"] == 2


# ---------------------------------------------------------------------- masked-LM figures


def _copy(teacher, pieces, masked, topk, loss, num_words, s=16, p=6):
    """A scored copy of `pieces` (ids) with slots at indexes `masked` (0-based piece indexes),
    top-k rows `topk` and per-piece loss `loss`."""
    ids = np.zeros(s, np.int32)
    ids[1:len(pieces) + 1] = pieces
    positions = np.zeros(p, np.int32)
    gold = np.zeros(p, np.int32)
    weights = np.zeros(p, np.float32)
    topk_ids = np.zeros((p, len(topk[0])), np.int32)
    for slot, (index, row) in enumerate(zip(masked, topk)):
        positions[slot], gold[slot], weights[slot] = index + 1, pieces[index], 1.0
        topk_ids[slot] = row
    return ScoredExample(
        input_word_ids=ids, input_mask=(ids > 0).astype(np.int32),
        input_type_ids=np.zeros(s, np.int32), masked_lm_positions=positions,
        masked_lm_ids=gold, masked_lm_weights=weights, language="en", teacher=teacher,
        example_id="en-x-0", teacher_topk_ids=topk_ids,
        teacher_topk_logits=np.zeros(topk_ids.shape, np.float32), teacher_loss=loss,
        num_masked_words=num_words, teacher_word_loss=loss * len(masked) / num_words)


# Teacher a (cased): 5 The 6 cat 7 ##s 8 sat 9 dog 1 [UNK]; teacher b (uncased): 5 the 6 cats
# 7 sat 8 dog.
VOCAB_A = SPECIALS + ["The", "cat", "##s", "sat", "dog"]
VOCAB_B = SPECIALS + ["the", "cats", "sat", "dog"]


def _vocabs():
    Spec = collections.namedtuple("Spec", "name vocab lower_case")
    return tr._Vocabs([Spec("a", tuple(VOCAB_A), False), Spec("b", tuple(VOCAB_B), True)])


def test_copy_stats_groups_words_and_counts():
    vocabs = _vocabs()
    # "The cats sat": a = The cat ##s sat (masked: cat ##s, sat), b = the cats sat (cats, sat).
    a = _copy("a", [5, 6, 7, 8], [1, 2, 3], [[6, 9], [7, 5], [9, 8]], 2.0, 2)
    stats = tr.copy_stats(a, vocabs)
    assert stats["pieces"] == 3 and stats["correct"] == 2          # cat, ##s right; sat wrong
    assert stats["word_groups"] == 2 and stats["words_correct"] == 1
    assert stats["words"] == 2
    assert stats["loss_sum"] == pytest.approx(6.0)
    assert stats["word_loss"] == pytest.approx(3.0)
    assert stats["word_text"] == ["cats", "sat"]


def test_pair_agreement_same_words_and_predictions():
    vocabs = _vocabs()
    a = _copy("a", [5, 6, 7, 8], [0, 3], [[5, 9], [8, 9]], 1.0, 2)       # The, sat
    b = _copy("b", [5, 6, 7], [0, 2], [[5, 8], [7, 6]], 1.5, 2)          # the, sat
    stats_a, stats_b = tr.copy_stats(a, vocabs), tr.copy_stats(b, vocabs)
    out = tr.pair_agreement(a, b, stats_a, stats_b, vocabs, top_k=2)
    # Words compared as the uncased teacher reads them: The == the. Top-1: The/the agree, sat
    # agree; top-2 sets {the, dog} vs {the, dog} and {sat, dog} vs {sat, cats}.
    assert out["aligned"] and out["words"] == 2 and out["top1"] == 2
    assert out["overlap"] == pytest.approx(1.0 + 0.5)


def test_pair_agreement_detects_different_masked_words():
    vocabs = _vocabs()
    a = _copy("a", [5, 6, 7, 8], [0], [[5, 9]], 1.0, 1)                  # The
    b = _copy("b", [5, 6, 7], [2], [[7, 8]], 1.0, 1)                     # sat
    out = tr.pair_agreement(a, b, tr.copy_stats(a, vocabs), tr.copy_stats(b, vocabs), vocabs, 2)
    assert not out["aligned"] and out["words"] == 0


def test_best_teacher_is_the_jobs_rule():
    assert tr.best_teacher({"b": {"word_loss": 1.0}, "a": {"word_loss": 2.0}}) == "b"
    assert tr.best_teacher({"b": {"word_loss": 1.0}, "a": {"word_loss": 1.0}}) == "a"  # tie


# --------------------------------------------------------------------------- statistics


def test_bootstrap_interval_contains_point_and_is_deterministic():
    rng = np.random.default_rng(0)
    num = rng.integers(0, 5, size=300).astype(float)
    den = num + rng.integers(1, 5, size=300)
    draws = tr.bootstrap_ratios(num[None], den[None], 500, seed=7)
    point = num.sum() / den.sum()
    ci = tr.interval(point, draws[:, 0])
    assert ci["low"] < point < ci["high"]
    assert ci["high"] - ci["low"] < 0.2
    again = tr.bootstrap_ratios(num[None], den[None], 500, seed=7)
    np.testing.assert_array_equal(draws, again)
    other = tr.bootstrap_ratios(num[None], den[None], 500, seed=8)
    assert not np.array_equal(draws, other)


def _row(example_id, a_loss, b_loss, a_correct=1, b_correct=1):
    def copy(loss, correct):
        return {"pieces": 2, "correct": correct, "loss_sum": 2 * loss, "words": 1,
                "word_loss": 2 * loss, "word_groups": 1, "words_correct": int(correct == 2),
                "unk_words": 0}
    return {"language": "en", "example_id": example_id,
            "copies": {"a": copy(a_loss, a_correct), "b": copy(b_loss, b_correct)},
            "pairs": {"a|b": {"aligned": True, "words": 1, "top1": 1, "overlap": 0.5}}}


def test_language_quality_win_rates_and_paired_difference():
    rng = np.random.default_rng(1)
    rows = [_row(f"en-{i}", 2.0 + rng.normal(0, 0.3), 2.5 + rng.normal(0, 0.3),
                 int(rng.integers(0, 3)), int(rng.integers(0, 3))) for i in range(300)]
    rows.append({"language": "en", "example_id": "en-only-a",
                 "copies": {"a": _row("x", 1, 1)["copies"]["a"]}, "pairs": {}})
    quality = tr.language_quality(rows, ["a", "b"], 400, seed=3, top_k=8)
    assert quality["examples"] == 301 and quality["compared_examples"] == 300
    assert quality["missing_copies"] == {"a": 0, "b": 1}
    wins = [quality["teachers"][t]["best_win_rate"]["value"] for t in ("a", "b")]
    assert sum(wins) == pytest.approx(1.0)
    assert wins[0] > 0.8
    for t in ("a", "b"):
        for metric in ("piece_accuracy", "word_accuracy", "loss_per_piece", "loss_per_word",
                       "perplexity_per_word", "best_win_rate"):
            ci = quality["teachers"][t][metric]
            assert ci["low"] <= ci["value"] <= ci["high"], (t, metric, ci)
    (pair,) = quality["pairs"]
    diff = pair["loss_per_word_difference"]
    assert diff["high"] < 0                       # a's loss per word is lower, significantly
    assert diff["value"] == pytest.approx(quality["teachers"]["a"]["loss_per_word"]["value"]
                                          - quality["teachers"]["b"]["loss_per_word"]["value"])
    assert pair["aligned_share"] == 1.0
    assert pair["agreement"] == {"k": 8, "words": 300, "top1": 1.0, "overlap_at_k": 0.5}
    # Order of the rows does not matter; the seed does.
    again = tr.language_quality(list(reversed(rows)), ["a", "b"], 400, seed=3, top_k=8)
    assert again == quality


# ----------------------------------------------------------------------- recommendation


def _quality(loss_low, loss_high, accuracy=(-0.01, 0.01), aligned=1.0, compared=500,
             wins=(0.5, 0.5)):
    """A language_quality-like dict of teachers a, b: paired CIs of a − b."""
    def ci(low, high):
        return {"value": (low + high) / 2, "low": low, "high": high}
    return {"compared_examples": compared,
            "teachers": {t: {"best_win_rate": {"value": w}} for t, w in zip("ab", wins)},
            "pairs": [{"a": "a", "b": "b", "loss_per_word_difference": ci(loss_low, loss_high),
                       "word_accuracy_difference": ci(*accuracy), "aligned_share": aligned}]}


def _fitfig(unk_words, uncovered=0.0):
    return {"unk_word_rate": unk_words, "uncovered_character_rate": uncovered, "fertility": 1.3}


def test_recommend_drops_a_teacher_that_is_worse_and_covers_no_better():
    rec = tr.recommend(["a", "b"], {"a": _fitfig(0.01), "b": _fitfig(0.01)},
                       _quality(0.2, 0.6, wins=(0.2, 0.8)))
    assert rec["mode"] == "single" and rec["teachers"] == ["b"]
    assert "a" in rec["not_recommended"] and not rec["warnings"]
    assert rec["not_recommended"]["a"].startswith("b has a lower loss per masked word")


def test_recommend_all_when_no_teacher_is_better():
    rec = tr.recommend(["a", "b"], {"a": _fitfig(0.0), "b": _fitfig(0.0)}, _quality(-0.1, 0.2))
    assert rec["mode"] == "all" and rec["teachers"] == ["a", "b"]


def test_recommend_all_with_a_warning_when_loss_and_accuracy_disagree():
    # b has the lower loss per word, a the higher word accuracy: neither is dropped.
    rec = tr.recommend(["a", "b"], {"a": _fitfig(0.0), "b": _fitfig(0.0)},
                       _quality(0.1, 0.3, accuracy=(0.005, 0.02)))
    assert rec["mode"] == "all" and rec["teachers"] == ["a", "b"]
    assert any("the figures disagree" in w for w in rec["warnings"])


def test_recommend_best_when_the_better_teacher_covers_worse():
    rec = tr.recommend(["a", "b"], {"a": _fitfig(0.001), "b": _fitfig(0.03)},
                       _quality(0.1, 0.3))
    assert rec["mode"] == "best" and rec["teachers"] == ["a", "b"]


def test_recommend_warnings():
    rec = tr.recommend(["a", "b"], {"a": _fitfig(0.08, 0.02), "b": _fitfig(0.08, 0.0)},
                       _quality(-0.1, 0.1, aligned=0.9, compared=50),
                       lower_case={"a": True, "b": False})
    text = " ".join(rec["warnings"])
    assert "a: 8.0% of the words" in text and "characters are lost" in text
    assert "masked different words" in text and "only 50 compared examples" in text
    assert "a is uncased, the other(s) cased" in text
    single = tr.recommend(["a"], {"a": _fitfig(0.0)},
                          {"compared_examples": 300, "teachers": {}, "pairs": []})
    assert single["mode"] == "single" and single["teachers"] == ["a"]


# ------------------------------------------------------------------------------ sample


def test_sample_documents_is_order_free_and_matches_beam():
    lines = [line.encode() for line in demo_lines("en", 60)] + [b"", b"   "]
    sample = tr.sample_documents(lines, 20, seed=5)
    assert len(sample) == 20 and b"" not in sample
    assert tr.sample_documents(list(reversed(lines)), 20, seed=5) == sample
    assert tr.sample_documents(lines, 20, seed=6) != sample
    with beam.Pipeline(options=beam.options.pipeline_options.PipelineOptions(
            ["--runner=DirectRunner", "--direct_running_mode=in_memory"])) as pipeline:
        sampled = (pipeline | beam.Create(lines)
                   | tr.SampleDocuments("en", 20, seed=5))
        assert_that(sampled, equal_to(sample))


# ---------------------------------------------------------------------------- union cost


def test_union_cost_leave_one_out_equals_student_vocab_without_the_teacher():
    from vocab.union import StudentVocab

    vocabs = {"a": SPECIALS + ["x", "y", "z"], "b": SPECIALS + ["y", "w"],
              "c": SPECIALS + ["z", "w", "v", "[unused0]"]}
    cost = tr.union_cost(vocabs)
    assert cost["student_size"] == StudentVocab.build(vocabs).size == 5 + 5
    for name in vocabs:
        without = StudentVocab.build({n: v for n, v in vocabs.items() if n != name}).size
        assert cost["teachers"][name]["without"] == without
        assert cost["teachers"][name]["adds"] == cost["student_size"] - without
    assert [cost["teachers"][n]["adds"] for n in "abc"] == [1, 0, 1]   # x; -; v


# --------------------------------------------------------------------------- bad input


def test_flag_errors_name_the_flag():
    with pytest.raises(tr.TeacherReportError, match="--teacher 'x=path'"):
        tr.parse_teacher_flag("x=path")
    with pytest.raises(tr.TeacherReportError, match="--corpus 'en'"):
        tr.parse_corpus_flag("en")
    with pytest.raises(tr.TeacherReportError, match=r"language 'fr' has no --corpus"):
        tr.config_from_flags(["a=/t/a:en,fr"], ["en=/c/en.txt"], output_dir="/tmp/o")
    with pytest.raises(tr.TeacherReportError, match=r"--corpus de=\.\.\.: no --teacher serves"):
        tr.config_from_flags(["a=/t/a:en"], ["en=/c/en.txt", "de=/c/de.txt"],
                             output_dir="/tmp/o")
    config = tr.config_from_flags(["a=gs://b/t/a:en"], ["en=/c/en.txt"], output_dir="/tmp/o")
    assert config.teachers["a"].path == "gs://b/t/a"
    with pytest.raises(tr.TeacherReportError, match=r"--languages: \['xx'\] not in"):
        tr.check_languages(config, ["xx"])


def test_run_report_refuses_a_missing_corpus_and_a_bad_teacher(tmp_path):
    corpus = tmp_path / "en.txt"
    config = tr.config_from_flags([f"a={tmp_path / 'nope'}:en"], [f"en={tmp_path / 'no.txt'}"],
                                  output_dir=str(tmp_path / "out"))
    with pytest.raises(tr.TeacherReportError, match=r"languages\.en\.corpus: .* matches no"):
        tr.run_report(config, str(tmp_path / "out"))
    corpus.write_text("hello world\n")
    config = tr.config_from_flags([f"a={tmp_path / 'nope'}:en"], [f"en={corpus}"],
                                  output_dir=str(tmp_path / "out"))
    with pytest.raises(tr.TeacherReportError, match=r"teachers\.a .*cannot load the teacher"):
        tr.run_report(config, str(tmp_path / "out"))
    with pytest.raises(tr.TeacherReportError, match="--sample_paragraphs must be >= 1"):
        tr.run_report(config, str(tmp_path / "out"), sample_paragraphs=0)


# ------------------------------------------------------------- end to end on demo teachers

S, P, K = 64, 10, 8
SAMPLE = 90


@pytest.fixture(scope="module")
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
    report = tr.run_report(config, str(out), sample_paragraphs=SAMPLE, bootstrap_samples=300)
    return {"root": root, "config": config, "config_path": config_path, "out": out,
            "report": report, "teachers": teachers, "corpora": corpora}


def _examples(demo, language):
    """The sampled documents' masked copies built outside Beam (create_examples: the shared
    masking of a language with several teachers)."""
    from beam_jobs.build_examples import masking_config
    from teacher_scoring.examples import create_examples as create_examples_lib
    config = demo["config"]
    lines = demo["corpora"][language].read_bytes().split(b"\n")
    sample = tr.sample_documents(lines, SAMPLE, config.seed)
    tokenizers = {t: TeacherTokenizer(demo["teachers"][t][2], demo["teachers"][t][3])
                  for t in config.teachers_of(language)}
    copies = collections.defaultdict(dict)
    for example in create_examples_lib.create_examples(sample, language, tokenizers,
                                                       masking_config(config)):
        if example.num_predictions:
            copies[example.example_id][example.teacher] = example
    return sample, tokenizers, copies


@pytest.mark.slow
def test_report_files_and_summary(demo_report):
    out, report = demo_report["out"], demo_report["report"]
    assert tr.read_report(str(out)) == json.loads(json.dumps(report))
    markdown = (out / tr.REPORT_MD).read_text()
    for heading in ("## Recommendations", "## Vocabulary fit", "## Masked-LM quality",
                    "## Teachers of one language compared", "## What the union costs",
                    "## The rule"):
        assert heading in markdown
    assert (out / tr.REPORT_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.iterdir() if p.name.startswith(tr.TMP_PREFIX)]
    lines = tr.summary_lines(report)
    assert lines[0].startswith(f"teacher report ({SAMPLE} paragraphs")
    assert any(line.startswith("  en: ") for line in lines)
    assert any(line.startswith("  de: ende_uncased (single teacher)") for line in lines)
    assert lines[-1].startswith("  union: ")
    with pytest.raises(tr.TeacherReportError, match="already holds"):
        tr.run_report(demo_report["config"], str(out))


@pytest.mark.slow
def test_report_sample_and_vocabulary_fit_match_in_process(demo_report):
    report = demo_report["report"]
    for language in ("en", "de"):
        entry = report["languages"][language]
        sample, tokenizers, _ = _examples(demo_report, language)
        assert entry["sample"]["paragraphs"] == len(sample) == min(
            SAMPLE, len(demo_report["corpora"][language].read_text().split("\n")) - 2)
        assert entry["sample"]["blank_lines"] == 1     # the empty last line
        cleaned = [clean_text(d) for d in sample]
        for name, tokenizer in tokenizers.items():
            expected = tr.fit_counts(cleaned, tokenizer.tokenize_with_offsets(cleaned),
                                     tokenizer).figures()
            assert entry["vocabulary_fit"][name] == expected, (language, name)
    # The small alphabet of ende_uncased leaves words it cannot spell.
    assert report["languages"]["de"]["vocabulary_fit"]["ende_uncased"]["unk_word_rate"] > 0


@pytest.mark.slow
def test_report_same_masked_words_for_both_teachers(demo_report):
    report = demo_report["report"]
    _, _, copies = _examples(demo_report, "en")
    both = {eid: c for eid, c in copies.items() if len(c) == 2}
    assert len(both) >= SAMPLE * 0.9
    for example_id, pair in both.items():
        a, b = pair["en_cased"], pair["ende_uncased"]
        assert a.num_masked_words == b.num_masked_words, example_id
    mlm = report["languages"]["en"]["masked_lm"]
    assert mlm["compared_examples"] == len(both)
    (pair,) = mlm["pairs"]
    assert pair["aligned_share"] == 1.0 and pair["agreement"]["words"] > 0
    masked_words = sum(c["en_cased"].num_masked_words for c in both.values())
    for name in ("en_cased", "ende_uncased"):
        assert mlm["teachers"][name]["masked_words"] == masked_words


@pytest.mark.slow
def test_report_masked_lm_figures_match_the_score_fn(demo_report):
    """Accuracy and loss re-computed in process with scoring.make_score_fn on the same copies."""
    from teacher_scoring.teachers import scoring
    from teacher_scoring.teachers.loaders import load_teacher

    config, report = demo_report["config"], demo_report["report"]
    _, _, copies = _examples(demo_report, "en")
    both = [c for c in copies.values() if len(c) == 2]
    mlm = report["languages"]["en"]["masked_lm"]
    for name in ("en_cased", "ende_uncased"):
        teacher = load_teacher(config.teachers[name].path, name=name)
        score = scoring.make_score_fn(teacher, top_k=K)
        examples = [c[name] for c in both]
        batch = {f: np.stack([getattr(e, f) for e in examples]) for f in scoring.INPUTS}
        out = score(batch)
        weights = batch["masked_lm_weights"] > 0
        correct = (np.asarray(out["topk_ids"])[:, :, 0] == batch["masked_lm_ids"]) & weights
        pieces = weights.sum(axis=1)
        loss_sum = np.asarray(out["teacher_loss"]) * pieces
        words = np.array([e.num_masked_words for e in examples])
        figures = mlm["teachers"][name]
        assert figures["piece_accuracy"]["value"] == pytest.approx(correct.sum() / pieces.sum())
        assert figures["loss_per_piece"]["value"] == pytest.approx(loss_sum.sum() / pieces.sum(),
                                                                   rel=1e-4)
        assert figures["loss_per_word"]["value"] == pytest.approx(loss_sum.sum() / words.sum(),
                                                                  rel=1e-4)
        for metric in ("piece_accuracy", "loss_per_word", "perplexity_per_piece"):
            assert figures[metric]["low"] <= figures[metric]["value"] <= figures[metric]["high"]
    wins = sum(mlm["teachers"][t]["best_win_rate"]["value"] for t in ("en_cased", "ende_uncased"))
    assert wins == pytest.approx(1.0)
    rec = report["languages"]["en"]["recommendation"]
    assert rec["mode"] in ("single", "all", "best") and rec["teachers"]


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


@pytest.mark.slow
def test_report_is_deterministic_for_a_seed(demo_report, tmp_path):
    """A second run (German only, the same seed) gives the same figures."""
    again = tr.run_report(demo_report["config"], str(tmp_path / "again"),
                          sample_paragraphs=SAMPLE, bootstrap_samples=300, languages=["de"])
    assert list(again["languages"]) == ["de"]
    assert again["languages"]["de"] == demo_report["report"]["languages"]["de"]


@pytest.mark.slow
def test_cli_error_names_the_field(tmp_path):
    corpus = tmp_path / "en.txt"
    corpus.write_text("hello world\n")
    result = subprocess.run(
        [sys.executable, "-m", "beam_jobs.teacher_report",
         f"--teacher=bad={tmp_path / 'missing'}:en", f"--corpus=en={corpus}",
         f"--output_dir={tmp_path / 'out'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "teachers.bad" in result.stderr and "cannot load the teacher" in result.stderr
