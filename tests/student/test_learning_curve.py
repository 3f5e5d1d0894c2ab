"""Tests for student.learning_curve: a tiny teacher's held-out curve, checked independently."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from student import learning_curve as curve_lib
from student import pretrain_teacher as pretrain_lib
from teacher_scoring.examples import create_examples as create_examples_lib
from teacher_scoring.examples.masking import MaskingConfig
from teacher_scoring.examples.tokenization import read_vocab
from teacher_scoring.records import manifest as manifest_lib
from teacher_scoring.records import record_schema
from teacher_scoring.teachers import loaders
from tests.conftest import CORPORA, REPO_ROOT


def _points(*pairs):
    return [dict(step=step, loss=loss) for step, loss in pairs]


def test_flatness_compares_the_final_loss_with_the_point_nearest_the_window_start():
    curve = _points((100, 6.0), (200, 5.0), (300, 4.5), (400, 4.4), (500, 4.39))
    result = curve_lib.relative_improvement(curve, window=0.2)
    assert (result["from_step"], result["to_step"]) == (400, 500)
    assert result["relative_improvement"] == pytest.approx((4.4 - 4.39) / 4.4)
    wide = curve_lib.relative_improvement(curve, window=0.6)
    assert wide["from_step"] == 200
    assert wide["relative_improvement"] == pytest.approx((5.0 - 4.39) / 5.0)
    assert curve_lib.relative_improvement(curve[:1], 0.2)["relative_improvement"] is None


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny teacher trained 12 steps with a checkpoint every 4, and held-out shards."""
    root = tmp_path_factory.mktemp("curve")
    lines = (CORPORA / "demo" / "de.txt").read_text(encoding="utf-8").split("\n")
    train = root / "train.txt"
    train.write_text("\n".join(lines[:300]) + "\n", encoding="utf-8")
    heldout_text = (CORPORA / "udhr" / "de.txt").read_text(encoding="utf-8").split("\n")
    result = pretrain_lib.pretrain_teacher(
        name="tiny_de", language="de", corpus=[str(train)], work_dir=str(root / "work"),
        output_dir=str(root / "teacher"),
        config_file=str(REPO_ROOT / "configs/teacher/tiny.yaml"),
        params_override=["train.steps=12,train.checkpoint_interval=4,"
                         "train.max_checkpoints_to_keep=5"],
        vocab_size=500, num_shards=2)
    heldout = str(root / "heldout")
    create_examples_lib.write_shards(
        [line for line in heldout_text if line.strip()][:40], "de", "tiny_de",
        read_vocab(result.vocab_path), False,
        MaskingConfig(seq_length=32, max_predictions_per_seq=6, seed=99), heldout, 1,
        vocab_path=result.vocab_path)
    return root, result, heldout


def _heldout_batches(heldout):
    manifest = manifest_lib.read_manifest(heldout)
    files = manifest_lib.shard_paths(manifest, heldout, "de")
    for records in tf.data.TFRecordDataset(files).batch(16):
        yield record_schema.parse_batch(records, manifest.shard_spec, keep_strings=False)


@pytest.mark.slow
def test_curve_has_every_checkpoint_and_its_last_point_matches_the_exported_teacher(tiny_run):
    _, result, heldout = tiny_run
    curve = curve_lib.learning_curve(result.model_dir, {"de": heldout})
    assert [point["step"] for point in curve["curve"]] == [4, 8, 12]

    # Independently: the exported teacher folder (loaded by the scoring job's loader) on the
    # same held-out records gives the final point's accuracy and loss.
    teacher = loaders.load_teacher(result.teacher_dir)
    correct = tokens = 0
    loss = 0.0
    for batch in _heldout_batches(heldout):
        logits = teacher.mlm_logits(batch[record_schema.INPUT_WORD_IDS],
                                    batch[record_schema.INPUT_MASK],
                                    batch[record_schema.INPUT_TYPE_IDS],
                                    batch[record_schema.MASKED_LM_POSITIONS]).numpy()
        gold = batch[record_schema.MASKED_LM_IDS].numpy()
        real = batch[record_schema.MASKED_LM_WEIGHTS].numpy() > 0
        log_probs = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(
            -1, keepdims=True)) - logits.max(-1, keepdims=True)
        gold_log_probs = np.take_along_axis(log_probs, gold[..., None], -1)[..., 0]
        correct += int((logits.argmax(-1) == gold)[real].sum())
        loss -= float(gold_log_probs[real].sum())
        tokens += int(real.sum())
    assert curve["total_tokens"] == tokens > 30
    assert curve["curve"][-1]["accuracy"] == pytest.approx(correct / tokens)
    assert curve["curve"][-1]["loss"] == pytest.approx(loss / tokens, rel=1e-4)
    # Training helps: the held-out loss of step 12 is below step 4's.
    assert curve["curve"][-1]["loss"] < curve["curve"][0]["loss"]

    # The baselines, from the training shards' masked gold tokens.
    counts = np.zeros(len(teacher.vocab), np.int64)
    manifest = manifest_lib.read_manifest(result.shards_dir)
    for records in tf.data.TFRecordDataset(
            manifest_lib.shard_paths(manifest, result.shards_dir, "de")).batch(64):
        batch = record_schema.parse_batch(records, manifest.shard_spec, keep_strings=False)
        real = batch[record_schema.MASKED_LM_WEIGHTS].numpy() > 0
        counts += np.bincount(batch[record_schema.MASKED_LM_IDS].numpy()[real],
                              minlength=len(counts))
    frequent = int(counts.argmax())
    heldout_gold = np.concatenate([
        batch[record_schema.MASKED_LM_IDS].numpy()[batch[record_schema.MASKED_LM_WEIGHTS].numpy()
                                                   > 0]
        for batch in _heldout_batches(heldout)])
    baseline = curve["baseline"]
    assert baseline["frequent_token_id"] == frequent
    assert baseline["training_gold_tokens"] == counts.sum()
    assert baseline["frequent_token_accuracy"] == pytest.approx(
        np.mean(heldout_gold == frequent))
    unigram = np.log((counts + 1.0) / (counts.sum() + len(counts)))
    assert baseline["unigram_loss"] == pytest.approx(-unigram[heldout_gold].mean(), rel=1e-6)

    flat = curve["flatness"]
    assert (flat["from_step"], flat["to_step"]) == (8, 12)
    assert flat["flat"] == (flat["relative_improvement"] < 0.02)


@pytest.mark.slow
def test_outputs_and_the_steps_argument(tiny_run, tmp_path):
    _, result, heldout = tiny_run
    curve = curve_lib.learning_curve(result.model_dir, {"de": heldout}, steps=[8, 12])
    assert [point["step"] for point in curve["curve"]] == [8, 12]
    paths = curve_lib.write_outputs(curve, str(tmp_path / "out"))
    assert json.loads(open(paths["json"]).read())["curve"][1]["step"] == 12
    text = open(paths["md"]).read()
    assert "| 12 |" in text and "frequent token / unigram" in text and "by the < 2% rule" in text
    assert open(paths["png"], "rb").read()[:4] == b"\x89PNG"
    with pytest.raises(curve_lib.LearningCurveError, match=r"no checkpoint at step\(s\) \[5\]"):
        curve_lib.learning_curve(result.model_dir, {"de": heldout}, steps=[5])


@pytest.mark.slow
def test_refuses_shards_of_another_vocabulary_naming_the_field(tiny_run):
    root, result, _ = tiny_run
    other_vocab = root / "other_vocab.txt"
    tokens = read_vocab(result.vocab_path)
    other_vocab.write_text("\n".join(tokens[:-1] + ["zzzz"]) + "\n", encoding="utf-8")
    other = str(root / "other_shards")
    create_examples_lib.write_shards(
        ["Alle Menschen sind frei und gleich an Würde und Rechten geboren."], "de", "x",
        read_vocab(str(other_vocab)), False,
        MaskingConfig(seq_length=32, max_predictions_per_seq=6, seed=1), other, 1,
        vocab_path=str(other_vocab))
    with pytest.raises(curve_lib.LearningCurveError, match="field 'vocab_sha256'.*not in the "
                                                           "run's vocabulary"):
        curve_lib.learning_curve(result.model_dir, {"de": other})


def test_refuses_a_folder_without_checkpoints(tmp_path):
    with pytest.raises(curve_lib.LearningCurveError, match="no ckpt-STEP.index"):
        curve_lib.checkpoint_steps(str(tmp_path))
    with pytest.raises(curve_lib.LearningCurveError, match="is not a folder"):
        curve_lib.checkpoint_steps(str(tmp_path / "missing"))


@pytest.mark.slow
def test_an_older_run_info_without_the_vocab_hash_falls_back_to_the_vocab_file(tiny_run,
                                                                              tmp_path):
    _, result, heldout = tiny_run
    model_dir = tmp_path / "model"
    shutil.copytree(result.model_dir, model_dir)
    info_path = model_dir / "run_info.json"
    info = json.loads(info_path.read_text())
    info.pop("vocab_sha256")
    info_path.write_text(json.dumps(info))
    curve = curve_lib.learning_curve(str(model_dir), {"de": heldout}, steps=[12])
    assert curve["curve"][0]["step"] == 12
    info["vocab"] = str(tmp_path / "gone.txt")
    info_path.write_text(json.dumps(info))
    with pytest.raises(Exception, match="cannot tell which vocabulary"):
        curve_lib.learning_curve(str(model_dir), {"de": heldout}, steps=[12])
    assert os.path.exists(result.teacher_dir)
