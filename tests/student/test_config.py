"""Student configs: strict YAML + overrides, consistency checks, the paper's three students."""

import gc
from unittest import mock

import pytest
import tensorflow as tf
import tf_keras
import yaml

from student import config as config_lib
from student import model as model_lib
from tests.conftest import REPO_ROOT

CONFIGS = REPO_ROOT / "configs" / "student"

# (file, vocab size, parameters in the paper, embedding width, steps)
PAPER_STUDENTS = [
    ("student_similar.yaml", 99_112, 162e6, None, 250_000),
    ("student_dissimilar.yaml", 180_996, 225e6, None, 250_000),
    ("student_mbert_muril.yaml", 288_973, 160e6, 256, 500_000),
]


def test_tiny_and_demo_load():
    tiny = config_lib.load_config(str(CONFIGS / "tiny.yaml"))
    assert tiny.encoder.hidden_size == 32 and tiny.encoder.num_layers == 2
    assert tiny.runtime.distribution_strategy == "one_device"
    # A polynomial decay without decay_steps decays over train.steps.
    assert tiny.train.optimizer.learning_rate.polynomial.decay_steps == tiny.train.steps
    demo = config_lib.load_config(str(CONFIGS / "demo.yaml"))
    assert demo.data.seq_length <= 128 and 128 <= demo.encoder.hidden_size <= 256
    assert demo.encoder.vocab_size == 0  # taken from vocab.txt


@pytest.mark.parametrize("name,vocab,params,width,steps", PAPER_STUDENTS)
def test_paper_configs_follow_the_paper(name, vocab, params, width, steps):
    config = config_lib.load_config(str(CONFIGS / name))
    encoder = config.encoder
    assert encoder.vocab_size == vocab
    assert (encoder.hidden_size, encoder.num_layers, encoder.num_attention_heads,
            encoder.intermediate_size) == (768, 12, 12, 3072)
    assert encoder.embedding_size == width
    assert config.data.global_batch_size == 4096 and config.data.seq_length == 512
    assert config.data.top_k == 8 and config.data.sampling_alpha == 0.7
    assert config.train.steps == steps
    assert config.loss.lambda_schedule == "linear"
    assert (config.loss.lambda_start, config.loss.lambda_end) == (1.0, 0.0)
    assert config.runtime.distribution_strategy == "tpu"
    counts = model_lib.count_parameters_from_config(encoder)
    assert abs(counts["encoder"] / params - 1) < 0.02


def _zeros(self, shape, dtype=None, **kwargs):  # pylint: disable=unused-argument
    return tf.zeros(shape, dtype or tf.float32)


@pytest.mark.parametrize("name,vocab,params,width,steps", PAPER_STUDENTS)
def test_paper_models_have_the_papers_parameter_count(name, vocab, params, width, steps):
    """Builds each paper student once on CPU (the real tf-models model) and counts its weights.

    Truncated-normal sampling of the 76M-139M embedding values is most of the build time on a
    shared CPU and irrelevant to the count, so the weights are created as zeros here.
    """
    config = config_lib.load_config(str(CONFIGS / name))
    with mock.patch.object(tf_keras.initializers.TruncatedNormal, "__call__", _zeros):
        pretrainer = model_lib.build_pretrainer(config.model)
    try:
        encoder_params = model_lib.count_parameters(pretrainer.encoder_network)
        total = model_lib.count_parameters(pretrainer)
        assert pretrainer.encoder_network.get_embedding_table().shape == (vocab, width or 768)
        assert abs(encoder_params / params - 1) < 0.02, encoder_params
        assert abs(total / params - 1) < 0.02, total  # with the MLM head (tied output matrix)
        assert total == model_lib.count_parameters_from_config(config.encoder)["total"]
    finally:
        del pretrainer
        gc.collect()


def test_override_strings_and_order(tmp_path):
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump({"train": {"steps": 7}}))
    config = config_lib.load_config(
        str(CONFIGS / "tiny.yaml"),
        ["train.steps=100,data.global_batch_size=4", str(override), "loss.temperature=2.0"])
    assert config.train.steps == 7
    assert config.data.global_batch_size == 4
    assert config.loss.temperature == 2.0


def test_unknown_key_names_the_source_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  stepz: 3\n")
    with pytest.raises(config_lib.ConfigError, match=r"bad\.yaml.*stepz"):
        config_lib.load_config(str(bad))
    with pytest.raises(config_lib.ConfigError, match="stepz"):
        config_lib.load_config(str(CONFIGS / "tiny.yaml"), "train.stepz=3")


def test_wrong_type_names_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  seq_length: long\n")
    with pytest.raises(config_lib.ConfigError, match=r"bad\.yaml: field 'data\.seq_length' must "
                                                      r"be int, got 'long'"):
        config_lib.load_config(str(bad))
    with pytest.raises(config_lib.ConfigError, match="runtime.deterministic"):
        config_lib.load_config(None, "runtime.deterministic=3")


@pytest.mark.parametrize("override,field", [
    ("data.sampling_alpha=1.5", "data.sampling_alpha"),
    ("data.max_predictions_per_seq=100", "data.max_predictions_per_seq"),
    ("data.seq_length=1024", "data.seq_length"),
    ("data.logits_dtype=bfloat16", "data.logits_dtype"),
    ("data.on_corrupt_shard=ignore", "data.on_corrupt_shard"),
    ("loss.lambda_schedule=cosine", "loss.lambda_schedule"),
    ("loss.lambda_start=2.0", "loss.lambda_start"),
    ("loss.temperature=0.0", "loss.temperature"),
    ("train.steps_per_loop=0", "train.steps_per_loop"),
    ("runtime.distribution_strategy=gpu", "runtime.distribution_strategy"),
    ("model.encoder.bert_v2.num_attention_heads=5", "model.encoder.bert_v2.hidden_size"),
    ("model.encoder.type=bert", "model.encoder.type"),
])
def test_inconsistent_values_are_refused(override, field):
    with pytest.raises(config_lib.ConfigError, match=field.replace(".", r"\.")):
        config_lib.load_config(str(CONFIGS / "tiny.yaml"), override)


def test_vocab_size_is_checked_or_resolved():
    config = config_lib.load_config(str(CONFIGS / "tiny.yaml"))
    with pytest.raises(config_lib.ConfigError, match=r"vocab\.txt has 301 tokens but config "
                                                      r"field 'model\.encoder\.bert_v2\."
                                                      r"vocab_size' is 300"):
        config_lib.resolve_vocab_size(config, "vocab.txt", 301)
    demo = config_lib.load_config(str(CONFIGS / "demo.yaml"))
    config_lib.resolve_vocab_size(demo, "vocab.txt", 1234)
    assert demo.encoder.vocab_size == 1234


def test_yaml_round_trip(tmp_path):
    config = config_lib.load_config(str(CONFIGS / "tiny.yaml"), "train.steps=11")
    path = tmp_path / "params.yaml"
    config_lib.save_yaml(config, str(path))
    again = config_lib.load_config(str(path))
    assert again.as_dict() == config.as_dict()


def test_optimizer_clipping_moves_to_the_trainer():
    config = config_lib.load_config(str(CONFIGS / "tiny.yaml"))
    assert config_lib.gradient_clip_norm(config) == 1.0
    without = config_lib.optimizer_config_without_clipping(config)
    assert without.optimizer.adamw.gradient_clip_norm == 0.0
    assert config.train.optimizer.optimizer.adamw.gradient_clip_norm == 1.0
