"""The training loop: metrics, summaries, resume, XLA, data errors, export, plain MLM."""

import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from student import config as config_lib
from student import experiment
from student import export as export_lib
from student import model as model_lib
from student import shard_sources
from student import trainer as trainer_lib
from tests.student import shard_fixtures
from tests.student.conftest import TINY_CONFIG, make_shards

NO_DROPOUT = ("model.encoder.bert_v2.dropout_rate=0.0,"
              "model.encoder.bert_v2.attention_dropout_rate=0.0")


def make_trainer(model_dir, shards, vocab, *overrides):
    config = config_lib.load_config(TINY_CONFIG, list(overrides))
    data = experiment.prepare_data(config, vocab, shards)
    return experiment.build_trainer(config, data, str(model_dir))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, scored_shards, student_vocab):
    """A tiny student trained for its 8 steps (tiny.yaml), with its history."""
    model_dir = tmp_path_factory.mktemp("run")
    trainer = make_trainer(model_dir, scored_shards, student_vocab)
    history = trainer.train()
    return trainer, history, str(model_dir)


def _scalars(model_dir):
    values = {}
    for path in glob.glob(os.path.join(model_dir, "summaries", "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                values.setdefault(value.tag, {})[event.step] = float(
                    tf.make_ndarray(value.tensor))
    return values


def test_training_logs_every_step(trained):
    trainer, history, model_dir = trained
    assert history.steps == list(range(1, 9))
    metrics = {name: np.array(v) for name, v in history.metrics.items()}
    assert np.all(np.isfinite(metrics["loss"]))
    # lambda anneals linearly 1 -> 0 over train.steps = 8 (value at the step's start).
    np.testing.assert_allclose(metrics["lambda"], 1.0 - np.arange(8) / 8.0, atol=1e-7)
    np.testing.assert_allclose(
        metrics["loss"],
        metrics["lambda"] * metrics["kd_loss"] + (1 - metrics["lambda"]) * metrics["mlm_loss"],
        rtol=1e-5)
    # tf-models: linear warm-up over 2 steps towards the decayed rate at step 2, then a linear
    # decay from 1e-3 (step 0) to 0 (step 8).
    np.testing.assert_allclose(metrics["learning_rate"],
                               [0.0, 0.5 * 0.75e-3] + [1e-3 * (8 - s) / 8 for s in range(2, 8)],
                               rtol=1e-5, atol=1e-9)
    assert int(trainer.global_step.numpy()) == 8
    seen = trainer.examples_seen_by_language()
    assert sum(seen.values()) == 8 * 8 and seen["en"] > seen["de"] > 0
    scalars = _scalars(model_dir)
    for tag in ("loss/total", "loss/kd", "loss/mlm", "lambda", "learning_rate"):
        assert sorted(scalars[tag]) == list(range(1, 9)), tag
    np.testing.assert_allclose([scalars["lambda"][s] for s in range(1, 9)], metrics["lambda"])
    assert scalars["examples_seen/en"][8] == seen["en"]
    assert scalars["examples_seen/de"][8] == seen["de"]
    assert "examples_per_second" in scalars
    assert sorted(os.path.basename(p) for p in glob.glob(os.path.join(model_dir, "ckpt-*.index"))
                  ) == ["ckpt-4.index", "ckpt-8.index"]


def test_resumed_run_matches_uninterrupted_run(tmp_path, scored_shards, student_vocab):
    """Stop after 6 steps (last checkpoint at 4), restart: steps 5..8 equal an unbroken run."""
    whole = make_trainer(tmp_path / "whole", scored_shards, student_vocab).train()
    first = make_trainer(tmp_path / "broken", scored_shards, student_vocab)
    first.train(stop_at_step=6)
    assert first.checkpoint_manager.latest_checkpoint.endswith("ckpt-4")
    del first
    resumed = make_trainer(tmp_path / "broken", scored_shards, student_vocab)
    rest = resumed.train()
    assert rest.steps == [5, 6, 7, 8]
    for name in ("loss", "kd_loss", "mlm_loss", "lambda", "learning_rate"):
        np.testing.assert_allclose(rest.metrics[name], whole.metrics[name][4:], rtol=0,
                                   atol=1e-6, err_msg=name)
    assert sum(resumed.examples_seen_by_language().values()) == 64


def test_xla_compiled_step_matches(tmp_path, scored_shards, student_vocab):
    plain = make_trainer(tmp_path / "plain", scored_shards, student_vocab, NO_DROPOUT)
    xla = make_trainer(tmp_path / "xla", scored_shards, student_vocab, NO_DROPOUT,
                       "runtime.jit_compile=true")
    for a, b in zip(plain.model.weights, xla.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    values_plain, grads_plain = plain.loss_and_gradients(0.5)
    values_xla, grads_xla = xla.loss_and_gradients(0.5)
    for name in values_plain:
        np.testing.assert_allclose(values_xla[name], values_plain[name], rtol=1e-5)
    for g_plain, g_xla in zip(grads_plain, grads_xla):
        np.testing.assert_allclose(g_xla, g_plain, rtol=1e-4, atol=1e-6)
    # The whole training loop runs with the compiled step.
    history = xla.train(stop_at_step=1)
    assert history.steps == [1] and np.isfinite(history.metrics["loss"][0])


def test_corrupt_shard_stops_training_naming_the_file(tmp_path, student_vocab, scored_shards):
    folder = make_shards(tmp_path / "de", student_vocab, {"de": 40}, shards_per_language=2)
    bad = os.path.join(folder, "de-00000-of-00002.tfrecord")
    shard_fixtures.truncate_file(bad)
    trainer = make_trainer(tmp_path / "run", {"en": scored_shards["en"], "de": folder},
                           student_vocab)
    with pytest.raises(shard_sources.ShardError, match=r"de-00000-of-00002\.tfrecord: "
                                                       r"DataLossError: truncated record"):
        trainer.train()


def test_skip_policy_leaves_a_corrupt_shard_out(tmp_path, student_vocab, scored_shards):
    folder = make_shards(tmp_path / "de", student_vocab, {"de": 40}, shards_per_language=2)
    bad = os.path.join(folder, "de-00001-of-00002.tfrecord")
    shard_fixtures.corrupt_file(bad)
    config = config_lib.load_config(TINY_CONFIG, ["data.on_corrupt_shard=skip", "train.steps=2"])
    data = experiment.prepare_data(config, student_vocab,
                                   {"en": scored_shards["en"], "de": folder})
    assert [scan.path for scan in data.skipped] == [bad]
    de = next(source for source in data.sources if source.language == "de")
    assert bad not in de.files and len(de.files) == 1
    # Training around it end to end: tests/student/test_train_cli.py.


def test_plain_mlm_on_gold_only_shards_in_a_teacher_vocab(tmp_path):
    """lambda = 0: the same trainer pretrains a teacher on its own vocab (no teacher outputs)."""
    vocab = shard_fixtures.write_vocab(str(tmp_path / "teacher_vocab"), 200)
    folder = make_shards(tmp_path / "en", vocab, {"en": 32}, has_teacher_outputs=False,
                         id_space="teacher")
    trainer = make_trainer(tmp_path / "run", {"en": folder}, vocab,
                           "model.encoder.bert_v2.vocab_size=200",
                           "loss.lambda_schedule=constant,loss.lambda_start=0.0,train.steps=2")
    assert not trainer.use_teacher
    history = trainer.train()
    assert history.metrics["kd_loss"] == [0.0, 0.0]
    assert history.metrics["loss"] == history.metrics["mlm_loss"]
    with pytest.raises(Exception, match="has_teacher_outputs"):
        make_trainer(tmp_path / "run2", {"en": folder}, vocab,
                     "model.encoder.bert_v2.vocab_size=200")


def test_export_loads_for_fine_tuning(trained, tmp_path, student_vocab):
    trainer, _, _ = trained
    config = trainer.config
    paths = export_lib.export(trainer.model, config, os.path.join(student_vocab, "vocab.txt"),
                              str(tmp_path / "export"), step=8)
    inputs = model_lib.dummy_inputs(2, 32, 6)
    inputs["input_word_ids"] = tf.constant(np.random.default_rng(0).integers(5, 300, [2, 32]),
                                           tf.int32)
    expected = trainer.model(inputs, training=False)

    # A fine-tuning script builds its own encoder and reads the tf-models checkpoint into it.
    encoder = model_lib.build_encoder(config.model)
    encoder(model_lib.dummy_inputs(1, 4, 1))
    checkpoint = tf.train.latest_checkpoint(os.path.join(tmp_path, "export", "checkpoint"))
    assert checkpoint == paths["checkpoint"]
    status = tf.train.Checkpoint(encoder=encoder).read(checkpoint)
    status.expect_partial().assert_existing_objects_matched()
    encoder_inputs = {k: v for k, v in inputs.items() if k != "masked_lm_positions"}
    np.testing.assert_allclose(encoder(encoder_inputs, training=False)["sequence_output"],
                               expected["sequence_output"], rtol=1e-5, atol=1e-5)

    loaded = tf.saved_model.load(paths["saved_model"])
    served = loaded.signatures["serving_default"](**inputs)
    np.testing.assert_allclose(served["mlm_logits"], expected["mlm_logits"], rtol=1e-5,
                               atol=1e-5)
    encoded = loaded.signatures["encoder"](**encoder_inputs)
    np.testing.assert_allclose(encoded["pooled_output"], expected["pooled_output"], rtol=1e-5,
                               atol=1e-5)

    with open(paths["vocab"], encoding="utf-8") as f:
        assert f.read().split("\n")[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert config_lib.load_config(paths["params"]).as_dict() == config.as_dict()


def test_trains_on_a_mix_of_distilled_and_gold_only_languages(tmp_path, student_vocab,
                                                              scored_shards):
    """lambda > 0 with a declared gold-only language: KD on en, MLM only on fr."""
    fr = make_shards(tmp_path / "fr", student_vocab, {"fr": 40}, has_teacher_outputs=False,
                     seed=5)
    trainer = make_trainer(tmp_path / "run", {"en": scored_shards["en"], "fr": fr},
                           student_vocab, "data.gold_only_languages=[fr]", "train.steps=4")
    assert trainer.use_teacher and trainer.pipeline.mixed
    history = trainer.train()
    metrics = {name: np.array(v) for name, v in history.metrics.items()}
    assert np.all(np.isfinite(metrics["loss"])) and np.all(metrics["kd_loss"] > 0)
    # The gold-only rows add lambda * their MLM share to lambda KD + (1 - lambda) MLM.
    plain_mix = metrics["lambda"] * metrics["kd_loss"] + (1 - metrics["lambda"]) * \
        metrics["mlm_loss"]
    assert np.all(metrics["loss"] > plain_mix)
    seen = trainer.examples_seen_by_language()
    assert seen["fr"] > 0 and seen["en"] > 0
    trainer.write_run_info()
    info = json.loads(open(os.path.join(tmp_path, "run", "run_info.json")).read())
    assert info["gold_only_languages"] == ["fr"]


def test_non_finite_loss_stops_training_before_any_checkpoint(tmp_path, student_vocab):
    """Teacher logits that are finite on disk but overflow at T = 0.5 make the KD term NaN:
    training stops at that step, naming it and the batch's languages, and saves nothing."""
    good = make_shards(tmp_path / "good", student_vocab, {"en": 24})
    bad = make_shards(tmp_path / "bad", student_vocab, {"en": 24})
    for path in glob.glob(os.path.join(bad, "*.tfrecord")):
        shard_fixtures.set_teacher_logits(path, 3e38)
    overrides = ("loss.temperature=0.5", "train.checkpoint_input_iterator=false")
    model_dir = tmp_path / "run"
    make_trainer(model_dir, {"en": good}, student_vocab, *overrides).train(stop_at_step=4)
    trainer = make_trainer(model_dir, {"en": bad}, student_vocab, *overrides)
    with pytest.raises(trainer_lib.NonFiniteLossError) as info:
        trainer.train()
    message = str(info.value)
    assert message.startswith("training step 5/8 gave a non-finite loss"), message
    assert "{'en': 8}" in message and bad in message and "KD term" in message
    checkpoints = sorted(os.path.basename(p) for p in glob.glob(str(model_dir / "ckpt-*.index")))
    assert checkpoints == ["ckpt-4.index"]
    assert not (model_dir / "export").exists()


def test_nan_teacher_logits_stop_training_naming_the_shard(tmp_path, student_vocab):
    folder = make_shards(tmp_path / "en", student_vocab, {"en": 16})
    bad = os.path.join(folder, "en-00000-of-00002.tfrecord")
    shard_fixtures.set_teacher_logits(bad, float("nan"), records={2})
    trainer = make_trainer(tmp_path / "run", {"en": folder}, student_vocab)
    with pytest.raises(shard_sources.ShardError,
                       match=r"en-00000-of-00002\.tfrecord: NaN or infinite values: 48 in "
                             r"teacher_topk_logits"):
        trainer.train()
    assert not glob.glob(str(tmp_path / "run" / "ckpt-*"))


def test_run_info_reports_records_and_distinct_examples(tmp_path, student_vocab):
    """`all` shards hold a copy per teacher: run_info gives both counts (the sampling weights
    use the distinct one)."""
    from teacher_scoring.records import manifest as manifest_lib
    en = make_shards(tmp_path / "en", student_vocab, {"en": 40}, seed=1)
    manifest = manifest_lib.read_manifest(en)
    manifest.copies_mode = "all"
    manifest.languages["en"].unique_examples = 20
    manifest_lib.write_manifest(manifest, en)
    trainer = make_trainer(tmp_path / "run", {"en": en}, student_vocab, "train.steps=1")
    trainer.write_run_info()
    info = json.loads(open(os.path.join(tmp_path, "run", "run_info.json")).read())
    assert info["examples_in_manifests"] == {"en": 40}
    assert info["distinct_examples_in_manifests"] == {"en": 20}
