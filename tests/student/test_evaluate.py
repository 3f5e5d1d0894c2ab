"""Tests for student/evaluate.py: metrics against a NumPy reference, RDT, outputs, refusals."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from student import config as config_lib
from student import evaluate as evaluate_lib
from student import export as export_lib
from student import model as model_lib
from teacher_scoring.records import manifest as manifest_lib
from teacher_scoring.records import record_schema
from tests.conftest import REPO_ROOT
from tests.student import shard_fixtures

VOCAB_SIZE = 300
S, P, K = 32, 6, 8


def _export_student(tmp_path, vocab_dir, name="kd", seed=0):
    tf.keras.utils.set_random_seed(seed)
    config = config_lib.load_config(str(REPO_ROOT / "configs/student/tiny.yaml"))
    pretrainer = model_lib.build_pretrainer(config.model, S, P)
    export_dir = str(tmp_path / name / "export")
    export_lib.export(pretrainer, config, os.path.join(vocab_dir, "vocab.txt"), export_dir, 1)
    return pretrainer, export_dir


def _write_scored_dev(folder, vocab_dir, language="en", n=24):
    """Two teachers' copies of each example; teacher `good` is right on every other example."""
    spec = record_schema.ShardSpec(S, P, K)
    rng = np.random.default_rng(7)
    os.makedirs(folder, exist_ok=True)
    examples = []
    for i in range(n):
        for teacher in ("good", "bad"):
            example = shard_fixtures.random_example(rng, language, i, VOCAB_SIZE, spec,
                                                    invalid_fraction=0.0)
            example.teacher = teacher
            real = example.masked_lm_weights > 0
            if teacher == "good" and i % 2 == 0:
                example.teacher_topk_ids[real, 0] = example.masked_lm_ids[real]
            examples.append(example)
    name = f"{language}-00000-of-00001.tfrecord"
    with tf.io.TFRecordWriter(os.path.join(folder, name)) as writer:
        for example in examples:
            writer.write(record_schema.serialize(example, spec))
    masked = sum(e.num_predictions for e in examples)
    manifest = manifest_lib.Manifest(
        seq_length=S, max_predictions_per_seq=P, top_k=K, logits_dtype="float32",
        has_teacher_outputs=True, id_space="student",
        vocab_sha256=shard_fixtures.vocab_sha256(vocab_dir), vocab_size=VOCAB_SIZE,
        teachers={t: manifest_lib.TeacherEntry("0" * 64, VOCAB_SIZE, [language], False)
                  for t in ("good", "bad")},
        languages={language: manifest_lib.LanguageEntry(
            examples=len(examples), masked_tokens=masked, shards=[name],
            teachers={t: manifest_lib.TeacherCounts(n, sum(e.num_predictions for e in examples
                                                           if e.teacher == t))
                      for t in ("good", "bad")})},
        seed=0, copies_mode="all")
    manifest_lib.write_manifest(manifest, folder)
    return examples


def _reference(examples, pretrainer, teacher):
    """Plain NumPy: accuracy and loss of the teacher and of the student on its copies."""
    tokens = t_correct = s_correct = 0
    t_loss = s_loss = 0.0
    for e in examples:
        if e.teacher != teacher:
            continue
        inputs = {name: tf.constant(getattr(e, name)[None]) for name in (
            "input_word_ids", "input_mask", "input_type_ids", "masked_lm_positions")}
        logits = pretrainer(inputs, training=False)["mlm_logits"].numpy()[0].astype(np.float64)
        log_probs = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(
            -1, keepdims=True)) - logits.max(-1, keepdims=True)
        for slot in range(P):
            if e.masked_lm_weights[slot] <= 0:
                continue
            gold = e.masked_lm_ids[slot]
            tokens += 1
            t_correct += int(e.teacher_topk_ids[slot, 0] == gold)
            t_loss += e.teacher_loss
            s_correct += int(np.argmax(log_probs[slot]) == gold)
            s_loss += -log_probs[slot, gold]
    return dict(tokens=tokens, teacher_accuracy=t_correct / tokens, teacher_loss=t_loss / tokens,
                student_accuracy=s_correct / tokens, student_loss=s_loss / tokens)


def test_metrics_match_a_numpy_reference_and_outputs_are_written(tmp_path):
    vocab_dir = shard_fixtures.write_vocab(str(tmp_path / "vocab"), VOCAB_SIZE)
    pretrainer, export_dir = _export_student(tmp_path, vocab_dir)
    dev = str(tmp_path / "dev" / "en")
    examples = _write_scored_dev(dev, vocab_dir)

    result = evaluate_lib.evaluate({"en": dev}, {"kd": export_dir}, batch_size=5)
    rows = {row["teacher"]: row for row in result["rows"]}
    assert set(rows) == {"good", "bad"}
    for teacher in ("good", "bad"):
        want = _reference(examples, pretrainer, teacher)
        row = rows[teacher]
        assert row["tokens"] == want["tokens"]
        assert row["teacher_accuracy"] == pytest.approx(want["teacher_accuracy"])
        assert row["teacher_loss"] == pytest.approx(want["teacher_loss"], rel=1e-5)
        assert row["students"]["kd"]["accuracy"] == pytest.approx(want["student_accuracy"])
        assert row["students"]["kd"]["loss"] == pytest.approx(want["student_loss"], rel=1e-4)
    # The good teacher is right on about half its tokens: a real, non-trivial accuracy.
    assert 0.3 < rows["good"]["teacher_accuracy"] < 0.7
    expected_rdt = 100 * (rows["good"]["students"]["kd"]["accuracy"]
                          - rows["good"]["teacher_accuracy"]) / rows["good"]["teacher_accuracy"]
    assert rows["good"]["students"]["kd"]["rdt"] == pytest.approx(expected_rdt)

    paths = evaluate_lib.write_outputs(result, str(tmp_path / "out"))
    assert json.loads(open(paths["json"]).read())["rows"][0]["language"] == "en"
    table = open(paths["md"]).read()
    assert "| en | good |" in table and "RDT of `kd`" in table
    assert open(paths["png"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_rdt_follows_the_papers_sign_and_averages_over_languages():
    assert evaluate_lib.rdt(0.55, 0.50) == pytest.approx(10.0)
    assert evaluate_lib.rdt(0.45, 0.50) == pytest.approx(-10.0)
    tallies = {}
    for language, teacher, t_acc, s_acc in (("en", "a", 0.5, 0.55), ("en", "b", 0.5, 0.45),
                                             ("de", "c", 0.4, 0.5)):
        tally = evaluate_lib.Tally(tokens=100, examples=10, teacher_correct=int(t_acc * 100))
        tally.student_correct["s"] = int(s_acc * 100)
        tallies[(language, teacher)] = tally
    result = evaluate_lib.summarize(tallies, ["s"])
    assert result["rdt_per_language"]["en"]["s"] == pytest.approx(0.0)
    assert result["rdt_per_language"]["de"]["s"] == pytest.approx(25.0)
    assert result["rdt_average"]["s"] == pytest.approx(12.5)


def test_refuses_shards_in_another_vocabulary(tmp_path):
    vocab_dir = shard_fixtures.write_vocab(str(tmp_path / "vocab"), VOCAB_SIZE)
    _, export_dir = _export_student(tmp_path, vocab_dir)
    other_vocab = shard_fixtures.write_vocab(str(tmp_path / "other"), VOCAB_SIZE + 1)
    dev = str(tmp_path / "dev" / "en")
    _write_scored_dev(dev, other_vocab, n=2)
    with pytest.raises(evaluate_lib.EvaluationError, match=r"manifest.json: field 'vocab_sha256'"):
        evaluate_lib.evaluate({"en": dev}, {"kd": export_dir})


def test_refuses_a_missing_export_and_bad_flags(tmp_path):
    with pytest.raises(evaluate_lib.EvaluationError, match="saved_model is missing"):
        evaluate_lib.ExportedStudent("kd", str(tmp_path / "nothing"))
    with pytest.raises(evaluate_lib.EvaluationError, match="expected NAME=PATH"):
        evaluate_lib.parse_pairs(["en"], "shards")
    with pytest.raises(evaluate_lib.EvaluationError, match="given twice"):
        evaluate_lib.parse_pairs(["en=a", "en=b"], "shards")


def test_a_checkpoint_of_a_run_evaluates_like_the_export_of_the_same_weights(tmp_path):
    vocab_dir = shard_fixtures.write_vocab(str(tmp_path / "vocab"), VOCAB_SIZE)
    pretrainer, export_dir = _export_student(tmp_path, vocab_dir)
    config = config_lib.load_config(str(REPO_ROOT / "configs/student/tiny.yaml"))
    model_dir = tmp_path / "run"
    model_dir.mkdir()
    config_lib.save_yaml(config, str(model_dir / "params.yaml"))
    (model_dir / "run_info.json").write_text(json.dumps(
        {"vocab_sha256": shard_fixtures.vocab_sha256(vocab_dir)}))
    tf.train.Checkpoint(model=pretrainer).write(str(model_dir / "ckpt-3"))
    dev = str(tmp_path / "dev" / "en")
    _write_scored_dev(dev, vocab_dir, n=6)

    result = evaluate_lib.evaluate({"en": dev}, {"export": export_dir,
                                                 "step3": f"{model_dir}@3"})
    for row in result["rows"]:
        assert row["students"]["step3"] == pytest.approx(row["students"]["export"], rel=1e-6,
                                                        nan_ok=True)
    with pytest.raises(evaluate_lib.EvaluationError, match="ckpt-9.index is missing"):
        evaluate_lib.load_student("x", f"{model_dir}@9")


def test_gold_only_language_is_reported_without_teacher_and_outside_the_rdt(tmp_path):
    vocab_dir = shard_fixtures.write_vocab(str(tmp_path / "vocab"), VOCAB_SIZE)
    pretrainer, export_dir = _export_student(tmp_path, vocab_dir)
    dev = str(tmp_path / "dev" / "en")
    _write_scored_dev(dev, vocab_dir, n=6)
    gold = str(tmp_path / "dev" / "lb")
    shard_fixtures.write_shards(gold, {"lb": 10}, vocab_dir, S, P, K, has_teacher_outputs=False,
                                seed=3)
    result = evaluate_lib.evaluate({"en": dev, "lb": gold}, {"kd": export_dir}, batch_size=4)

    # The student's accuracy and loss on the gold-only examples, against a NumPy reference.
    rng = np.random.default_rng(3)
    spec = record_schema.ShardSpec(S, P, K, has_teacher_outputs=False)
    examples = [shard_fixtures.random_example(rng, "lb", i, VOCAB_SIZE, spec) for i in range(10)]
    tokens = correct = 0
    loss = 0.0
    for e in examples:
        inputs = {name: tf.constant(getattr(e, name)[None]) for name in (
            "input_word_ids", "input_mask", "input_type_ids", "masked_lm_positions")}
        logits = pretrainer(inputs, training=False)["mlm_logits"].numpy()[0].astype(np.float64)
        log_probs = logits - logits.max(-1, keepdims=True)
        log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
        for slot in np.nonzero(e.masked_lm_weights > 0)[0]:
            tokens += 1
            correct += int(np.argmax(log_probs[slot]) == e.masked_lm_ids[slot])
            loss -= log_probs[slot, e.masked_lm_ids[slot]]
    row = next(r for r in result["rows"] if r["language"] == "lb")
    assert row["gold_only"] and row["teacher"] is None and row["tokenizer_teacher"] == "teacher_lb"
    assert row["teacher_accuracy"] is None and row["teacher_loss"] is None
    assert row["tokens"] == tokens and row["examples"] == 10
    assert row["students"]["kd"]["accuracy"] == pytest.approx(correct / tokens)
    assert row["students"]["kd"]["loss"] == pytest.approx(loss / tokens, rel=1e-4)
    assert row["students"]["kd"]["rdt"] is None
    # RDT over the distilled language only.
    assert list(result["rdt_per_language"]) == ["en"]
    assert result["rdt_average"]["kd"] == pytest.approx(result["rdt_per_language"]["en"]["kd"],
                                                        nan_ok=True)   # teacher `bad`: 0 right
    assert result["gold_only_languages"] == ["lb"]
    paths = evaluate_lib.write_outputs(result, str(tmp_path / "out"))
    table = open(paths["md"]).read()
    assert "| lb | none (gold-only; teacher_lb tokenizer) | " in table
    lb_line = next(line for line in table.splitlines() if line.startswith("| lb |"))
    assert lb_line.count("n/a") == 3                      # teacher acc, teacher loss, RDT
    assert "Gold-only languages (no teacher; not in the RDT): lb" in table
    assert open(paths["png"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    # Only gold-only languages: no RDT at all.
    alone = evaluate_lib.evaluate({"lb": gold}, {"kd": export_dir})
    assert alone["rdt_average"] == {"kd": None} and alone["rdt_per_language"] == {}
    assert "average n/a" in evaluate_lib.to_markdown(alone)
    # A corrupt teacher loss in a distilled dev shard is refused, naming the folder.
    shard_fixtures.set_teacher_logits(os.path.join(dev, "en-00000-of-00001.tfrecord"),
                                      float("nan"), records={3}, feature_name="teacher_loss")
    with pytest.raises(evaluate_lib.EvaluationError,
                       match=f"{dev}: a record of 'en' has a NaN or infinite teacher_loss"):
        evaluate_lib.evaluate({"en": dev}, {"kd": export_dir})
