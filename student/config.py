"""The student's configuration: tf-models-official `hyperparams.Config` dataclasses.

A run's configuration is the defaults below, overridden by a YAML file (`--config_file`), then by
`--params_override` strings (`train.steps=100,data.global_batch_size=8`, a YAML/JSON string, or
another YAML file), in that order. Loading is strict: an unknown key, a value of the wrong type or
an inconsistent setting is a `ConfigError` naming the source, the field (dotted path) and the
value, raised before anything is built.

Sections:
  model    the encoder (tf-models `EncoderConfig`, type `bert_v2` = `BertEncoderV2`; its
           `embedding_size` factorises a large vocabulary) and the masked-LM head.
  data     static shapes S, P, k and the teacher logits dtype the shards must have, the global
           batch, the language smoothing exponent alpha, shuffling, corrupt-shard policy.
  loss     the KD/MLM mix: lambda (constant, or annealed linearly 1 -> 0 as in Clark et al.
           2019), the distillation temperature and optional T^2 scaling.
  train    steps, steps per tf.function call, checkpoint/summary cadence, the tf-models
           `OptimizationConfig` (AdamW + linear warm-up + linear decay by default).
  runtime  distribution strategy (tpu / mirrored / one_device), XLA, determinism, seed.
  tokenizer  which teacher's tokenizer each language uses in the export (student/tokenizer.py).
"""

import copy
import dataclasses
import typing

import yaml

from official.modeling import hyperparams
from official.modeling import optimization
from official.modeling.hyperparams import params_dict
from official.nlp.configs import encoders

from teacher_scoring.records import manifest as manifest_lib
from teacher_scoring.records import record_schema
LAMBDA_SCHEDULES = ("constant", "linear")
CORRUPT_SHARD_POLICIES = ("error", "skip")
STRATEGIES = ("one_device", "mirrored", "multi_worker_mirrored", "tpu")


class ConfigError(ValueError):
    """A configuration is malformed or inconsistent (names the source, field and value)."""


def _default_encoder() -> encoders.EncoderConfig:
    return encoders.EncoderConfig(
        type="bert_v2",
        bert_v2=encoders.BertEncoderConfig(
            vocab_size=30522, hidden_size=768, num_layers=12, num_attention_heads=12,
            intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2))


@dataclasses.dataclass
class ModelConfig(hyperparams.Config):
    """The student network: a BertEncoderV2 and a tied-embedding MaskedLM head.

    Attributes:
      encoder: tf-models encoder config; `type` must be `bert_v2`. `bert_v2.vocab_size` must
        equal the number of lines of the student vocab.txt (0: take that number);
        `bert_v2.embedding_size` (None = hidden_size) sets the factorised word-embedding width.
      mlm_activation: activation of the MaskedLM transform layer (BERT: gelu).
      mlm_initializer_range: stddev of the MaskedLM transform initializer.
    """

    encoder: encoders.EncoderConfig = dataclasses.field(default_factory=_default_encoder)
    mlm_activation: str = "gelu"
    mlm_initializer_range: float = 0.02


@dataclasses.dataclass
class DataConfig(hyperparams.Config):
    """How scored shards are read and mixed.

    Attributes:
      seq_length: S; every manifest must have this seq_length.
      max_predictions_per_seq: P; every manifest must have this value.
      top_k: k of the stored teacher predictions (checked when KD is used).
      logits_dtype: storage dtype of the teacher logits the shards must have (float32|float16).
      global_batch_size: examples per step over all replicas (drop_remainder batches).
      sampling_alpha: languages are sampled with probability proportional to n_l ** alpha
        (n_l = distinct examples of language l in its manifest, `unique_examples`: the copies
        of an `all` run count once); 1 = natural, 0 = uniform.
      shuffle_buffer_size: per-language example shuffle buffer.
      cycle_length: shards read in parallel per language (interleave).
      input_streams: N > 0: every global batch is the concatenation of N file-disjoint
        sub-streams of global_batch_size / N examples each (stream g reads shard files g::N of
        every language); each of W workers reads N / W of them, so the batches do not depend on
        W (input_pipeline.py). 0 (default) = one stream per worker (one stream on one worker).
      seed: seed of file shuffling, example shuffling and language sampling.
      on_corrupt_shard: `error`: a corrupt/truncated shard (or one holding NaN/infinite
        teacher logits, losses or weights) stops training with an error naming the file; `skip`:
        every shard is read once before training, bad ones are left out and counted
        (model_dir/skipped_shards.json).
      gold_only_languages: languages trained on gold labels only beside distilled ones (paper
        §4.4, footnote 10): their shard folders have no teacher outputs (scoring job
        `tokenizer_teacher`), their examples get KD weight 0 and MLM weight 1 (losses.py). A
        folder without teacher outputs is refused under lambda > 0 unless its language is
        listed here; a listed language whose folder has teacher outputs is refused too.
      packing: how the scoring job packed text into sequences; every manifest must have it
        (field `packing`): `within_document` (BERT's format, the default: a sequence holds one
        document's text) or `full_sentences` (RoBERTa's: across documents, a separator token
        between them; scoring config `packing`).
    """

    seq_length: int = 512
    max_predictions_per_seq: int = 80
    top_k: int = 8
    logits_dtype: str = "float32"
    global_batch_size: int = 4096
    sampling_alpha: float = 0.7
    shuffle_buffer_size: int = 10000
    cycle_length: int = 8
    seed: int = 1
    on_corrupt_shard: str = "error"
    gold_only_languages: typing.List[str] = dataclasses.field(default_factory=list)
    input_streams: int = 0
    packing: str = "within_document"


@dataclasses.dataclass
class LossConfig(hyperparams.Config):
    """L = lambda * KD + (1 - lambda) * MLM.

    Attributes:
      lambda_schedule: `linear` (lambda_start -> lambda_end over lambda_anneal_steps, then
        constant) or `constant` (lambda_start throughout).
      lambda_start: lambda at step 0 (teacher annealing starts from 1: pure KD).
      lambda_end: lambda at the end of the anneal (linear only).
      lambda_anneal_steps: steps of the linear anneal; 0 = train.steps.
      temperature: T; teacher and student logits are divided by T in the KD term.
      scale_kd_by_temperature_squared: multiply the KD term by T^2 (Hinton et al. 2015), which
        keeps its gradient scale independent of T.
    """

    lambda_schedule: str = "linear"
    lambda_start: float = 1.0
    lambda_end: float = 0.0
    lambda_anneal_steps: int = 0
    temperature: float = 1.0
    scale_kd_by_temperature_squared: bool = False


def _default_optimization() -> optimization.OptimizationConfig:
    return optimization.OptimizationConfig({
        "optimizer": {"type": "adamw", "adamw": {
            "weight_decay_rate": 0.01,
            "exclude_from_weight_decay": ["LayerNorm", "layer_norm", "bias"],
            "gradient_clip_norm": 1.0,
            "epsilon": 1e-6}},
        "learning_rate": {"type": "polynomial", "polynomial": {
            "initial_learning_rate": 1e-4, "end_learning_rate": 0.0, "power": 1.0}},
        "warmup": {"type": "linear", "linear": {"warmup_steps": 10000}},
    })


@dataclasses.dataclass
class TrainConfig(hyperparams.Config):
    """The training loop.

    Attributes:
      steps: total optimizer steps.
      steps_per_loop: steps run inside one tf.function call (host round trip per loop).
      checkpoint_interval: save a checkpoint every this many steps (and at the end).
      max_checkpoints_to_keep: older checkpoints are deleted.
      log_interval: write the log line every this many steps (rounded up to whole loops).
      checkpoint_input_iterator: save the input iterator's position in checkpoints, so that a
        restarted run continues the data stream exactly (shuffle buffers are saved too).
      optimizer: tf-models OptimizationConfig. A polynomial decay without `decay_steps` decays
        over train.steps. Gradient clipping (`adamw.gradient_clip_norm`) is applied to the
        all-reduced gradient, so it is the same for any number of replicas.
    """

    steps: int = 250000
    steps_per_loop: int = 1000
    checkpoint_interval: int = 10000
    max_checkpoints_to_keep: int = 5
    log_interval: int = 1000
    checkpoint_input_iterator: bool = True
    optimizer: optimization.OptimizationConfig = dataclasses.field(
        default_factory=_default_optimization)


@dataclasses.dataclass
class RuntimeConfig(hyperparams.Config):
    """Where and how the step runs.

    Attributes:
      distribution_strategy: one_device | mirrored | multi_worker_mirrored | tpu
        (multi_worker_mirrored: MultiWorkerMirroredStrategy over the workers of TF_CONFIG).
      tpu: TPU name or address for TPUClusterResolver (`local` on a TPU VM).
      num_gpus: GPUs for one_device / mirrored (0 = CPU; mirrored then uses every logical CPU).
      jit_compile: XLA-compile the per-replica forward/backward pass (always compiled on TPU).
      deterministic: tf.config.experimental.enable_op_determinism() (CPU tests, debugging).
      seed: global seed (weights init, dropout generators).
    """

    distribution_strategy: str = "one_device"
    tpu: str = ""
    num_gpus: int = 0
    jit_compile: bool = False
    deterministic: bool = False
    seed: int = 1


@dataclasses.dataclass
class TokenizerConfig(hyperparams.Config):
    """The student's tokenizer, written into the export (student/tokenizer.py).

    A language uses the teacher whose copies of it the student saw most (per-teacher `examples`
    of its training manifest; ties: union order), unless overridden here.

    Attributes:
      teacher_for_language: `LANG=TEACHER` strings, e.g. `[es=beto]`; the teacher must be one
        that tokenized that language's training shards (checked at startup).
      fallback_teacher: the teacher of languages the student was not trained on ("" = none:
        such a language is an error); must be a teacher of the training shards.
    """

    teacher_for_language: typing.List[str] = dataclasses.field(default_factory=list)
    fallback_teacher: str = ""


@dataclasses.dataclass
class StudentConfig(hyperparams.Config):
    """Everything a student run needs besides the vocab and shard paths."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)
    tokenizer: TokenizerConfig = dataclasses.field(default_factory=TokenizerConfig)

    @property
    def encoder(self) -> encoders.BertEncoderConfig:
        return self.model.encoder.get()

    @property
    def vocab_size(self) -> int:
        return self.encoder.vocab_size


# ----------------------------------------------------------------------------- loading


def _apply_override(config: StudentConfig, override, source: str) -> None:
    try:
        params_dict.override_params_dict(config, override, is_strict=True)
    except KeyError as error:
        raise ConfigError(f"{source}: {error.args[0] if error.args else error}") from error
    except (ValueError, TypeError, yaml.YAMLError) as error:
        raise ConfigError(f"{source}: {error}") from error


def load_config(config_file: str | None = None, params_override=()) -> StudentConfig:
    """Defaults, then `config_file`, then each `params_override`; checked and completed.

    Args:
      config_file: a YAML file, or None for the defaults.
      params_override: a string or a sequence of strings/dicts, each a CSV `a.b=1,c=2` string,
        a YAML/JSON string, a YAML file or a dict.

    Returns:
      The validated StudentConfig (with derived values filled in, e.g. the decay steps).

    Raises:
      ConfigError: naming the source, the field and the value.
    """
    config = StudentConfig()
    if config_file:
        with open(config_file, encoding="utf-8") as f:
            try:
                data = yaml.safe_load(f)
            except yaml.YAMLError as error:
                raise ConfigError(f"{config_file}: not valid YAML ({error})") from error
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"{config_file}: expected a mapping at the top level, got "
                              f"{type(data).__name__}")
        _apply_override(config, data or {}, config_file)
        check_types(config, config_file)
    if isinstance(params_override, (str, dict)):
        params_override = [params_override]
    for override in params_override:
        if not override:
            continue
        source = f"params_override {override!r}"
        _apply_override(config, override, source)
        check_types(config, source)
    finalize(config)
    return config


def _is_config_type(annotation) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, params_dict.ParamsDict)


def check_types(config: params_dict.ParamsDict, source: str, prefix: str = "") -> None:
    """Checks every scalar field against its dataclass annotation (recursively).

    int fields take ints (not bools), float fields ints or floats, bool fields bools, str
    fields strings; Optional[...] fields also take None. Other annotations are not checked.
    """
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        if field.name in params_dict.ParamsDict.RESERVED_ATTR:
            continue
        value = getattr(config, field.name)
        path = prefix + field.name
        annotation = hints.get(field.name, field.type)
        optional = False
        if typing.get_origin(annotation) is typing.Union:
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            optional = len(args) < len(typing.get_args(annotation))
            if len(args) != 1:
                continue
            annotation = args[0]
        if value is None:
            if optional or _is_config_type(annotation):
                continue
            raise ConfigError(f"{source}: field '{path}' must not be null")
        if _is_config_type(annotation):
            if isinstance(value, params_dict.ParamsDict) and dataclasses.is_dataclass(value):
                check_types(value, source, path + ".")
            continue
        ok = True
        if annotation is bool:
            ok = isinstance(value, bool)
        elif annotation is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif annotation is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif annotation is str:
            ok = isinstance(value, str)
        if not ok:
            raise ConfigError(f"{source}: field '{path}' must be {annotation.__name__}, got "
                              f"{value!r}")


def _fail(field: str, value, why: str):
    raise ConfigError(f"config: field '{field}' = {value!r}: {why}")


def finalize(config: StudentConfig) -> StudentConfig:
    """Checks the consistency of `config` and fills in derived values (in place)."""
    model, data, loss, train, runtime = (config.model, config.data, config.loss, config.train,
                                         config.runtime)
    if model.encoder.type != "bert_v2":
        _fail("model.encoder.type", model.encoder.type, "the student is a BertEncoderV2; use "
              "'bert_v2'")
    enc = config.encoder
    if enc.vocab_size < 0:
        _fail("model.encoder.bert_v2.vocab_size", enc.vocab_size,
              "must be positive (or 0: the size of the student vocab.txt)")
    for name in ("hidden_size", "num_layers", "num_attention_heads",
                 "intermediate_size", "max_position_embeddings", "type_vocab_size"):
        if getattr(enc, name) <= 0:
            _fail(f"model.encoder.bert_v2.{name}", getattr(enc, name), "must be positive")
    if enc.hidden_size % enc.num_attention_heads:
        _fail("model.encoder.bert_v2.hidden_size", enc.hidden_size,
              f"must be a multiple of num_attention_heads={enc.num_attention_heads}")
    if enc.embedding_size is not None and enc.embedding_size <= 0:
        _fail("model.encoder.bert_v2.embedding_size", enc.embedding_size, "must be positive")
    if data.seq_length <= 0 or data.seq_length > enc.max_position_embeddings:
        _fail("data.seq_length", data.seq_length,
              f"must be in [1, max_position_embeddings={enc.max_position_embeddings}]")
    if not 0 < data.max_predictions_per_seq <= data.seq_length:
        _fail("data.max_predictions_per_seq", data.max_predictions_per_seq,
              f"must be in [1, seq_length={data.seq_length}]")
    if data.top_k <= 0:
        _fail("data.top_k", data.top_k, "must be positive")
    if data.logits_dtype not in record_schema.LOGITS_DTYPES:
        _fail("data.logits_dtype", data.logits_dtype,
              f"must be one of {record_schema.LOGITS_DTYPES}")
    if data.packing not in manifest_lib.PACKINGS:
        _fail("data.packing", data.packing, f"must be one of {list(manifest_lib.PACKINGS)}")
    if data.global_batch_size <= 0:
        _fail("data.global_batch_size", data.global_batch_size, "must be positive")
    if not 0.0 <= data.sampling_alpha <= 1.0:
        _fail("data.sampling_alpha", data.sampling_alpha, "must be in [0, 1]")
    if data.shuffle_buffer_size <= 0:
        _fail("data.shuffle_buffer_size", data.shuffle_buffer_size, "must be positive")
    if data.cycle_length <= 0:
        _fail("data.cycle_length", data.cycle_length, "must be positive")
    if data.input_streams < 0:
        _fail("data.input_streams", data.input_streams, "must be >= 0 (0 = one per worker)")
    if data.input_streams and data.global_batch_size % data.input_streams:
        _fail("data.input_streams", data.input_streams,
              f"must divide data.global_batch_size = {data.global_batch_size}")
    gold_only = data.gold_only_languages
    if (not isinstance(gold_only, (list, tuple)) or
            not all(isinstance(lang, str) and lang.strip() for lang in gold_only)):
        _fail("data.gold_only_languages", gold_only, "must be a list of language codes")
    if len(set(gold_only)) != len(gold_only):
        _fail("data.gold_only_languages", gold_only, "lists a language twice")
    if data.on_corrupt_shard not in CORRUPT_SHARD_POLICIES:
        _fail("data.on_corrupt_shard", data.on_corrupt_shard,
              f"must be one of {CORRUPT_SHARD_POLICIES}")
    if loss.lambda_schedule not in LAMBDA_SCHEDULES:
        _fail("loss.lambda_schedule", loss.lambda_schedule, f"must be one of {LAMBDA_SCHEDULES}")
    for name in ("lambda_start", "lambda_end"):
        if not 0.0 <= getattr(loss, name) <= 1.0:
            _fail(f"loss.{name}", getattr(loss, name), "must be in [0, 1]")
    if loss.lambda_anneal_steps < 0:
        _fail("loss.lambda_anneal_steps", loss.lambda_anneal_steps, "must be >= 0")
    if loss.temperature <= 0:
        _fail("loss.temperature", loss.temperature, "must be positive")
    for name in ("steps", "steps_per_loop", "checkpoint_interval", "max_checkpoints_to_keep",
                 "log_interval"):
        if getattr(train, name) <= 0:
            _fail(f"train.{name}", getattr(train, name), "must be positive")
    if runtime.distribution_strategy not in STRATEGIES:
        _fail("runtime.distribution_strategy", runtime.distribution_strategy,
              f"must be one of {STRATEGIES}")
    if runtime.num_gpus < 0:
        _fail("runtime.num_gpus", runtime.num_gpus, "must be >= 0")
    overrides = config.tokenizer.teacher_for_language
    if not isinstance(overrides, (list, tuple)):
        _fail("tokenizer.teacher_for_language", overrides, "must be a list of LANG=TEACHER")
    languages = set()
    for entry in overrides:
        language, sep, teacher = entry.partition("=") if isinstance(entry, str) else ("", "", "")
        if not sep or not language.strip() or not teacher.strip():
            _fail("tokenizer.teacher_for_language", entry, "each entry must be LANG=TEACHER, "
                  "e.g. es=beto")
        if language.strip() in languages:
            _fail("tokenizer.teacher_for_language", entry,
                  f"language {language.strip()!r} is given twice")
        languages.add(language.strip())

    opt = train.optimizer
    if opt.optimizer.type is None:
        _fail("train.optimizer.optimizer.type", None, "an optimizer type is required")
    if opt.learning_rate.type == "polynomial":
        poly = opt.learning_rate.polynomial
        if poly.initial_learning_rate is None:
            _fail("train.optimizer.learning_rate.polynomial.initial_learning_rate", None,
                  "is required")
        if poly.decay_steps is None:
            poly.decay_steps = train.steps
    if opt.warmup.type == "linear" and opt.warmup.linear.warmup_steps is None:
        _fail("train.optimizer.warmup.linear.warmup_steps", None, "is required")
    return config


def resolve_vocab_size(config: StudentConfig, vocab_path: str, num_tokens: int) -> None:
    """Checks model.encoder.bert_v2.vocab_size against the vocab.txt (0 = take its size).

    Raises:
      ConfigError: naming the vocab file, its size and the config value.
    """
    encoder = config.encoder
    if encoder.vocab_size == 0:
        encoder.vocab_size = num_tokens
    elif encoder.vocab_size != num_tokens:
        raise ConfigError(f"{vocab_path} has {num_tokens} tokens but config field "
                          f"'model.encoder.bert_v2.vocab_size' is {encoder.vocab_size}")


def gradient_clip_norm(config: StudentConfig) -> float:
    """The configured global-norm clip (0 = none), applied by the trainer after all-reduce."""
    opt = config.train.optimizer.optimizer
    inner = opt.get()
    return float(getattr(inner, "gradient_clip_norm", 0.0) or 0.0)


def optimizer_config_without_clipping(config: StudentConfig) -> optimization.OptimizationConfig:
    """A copy of the optimization config with the optimizer's own clipping disabled.

    tf-models' AdamWeightDecay clips each replica's gradient before the all-reduce; the trainer
    clips the all-reduced gradient instead (same result for any replica count).
    """
    opt = copy.deepcopy(config.train.optimizer)
    inner = opt.optimizer.get()
    if hasattr(inner, "gradient_clip_norm"):
        inner.gradient_clip_norm = 0.0
    for name in ("clipnorm", "clipvalue", "global_clipnorm"):
        if getattr(inner, name, None) is not None:
            raise ConfigError(f"config: field 'train.optimizer.optimizer.{opt.optimizer.type}."
                              f"{name}' is not supported; use gradient_clip_norm")
    return opt


def to_yaml(config: StudentConfig) -> str:
    """The configuration as YAML (what the run used; loadable with --config_file)."""
    return yaml.safe_dump(config.as_dict(), sort_keys=True, default_flow_style=False)


def save_yaml(config: StudentConfig, path: str) -> None:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(to_yaml(config))


__all__ = [
    "ConfigError", "ModelConfig", "DataConfig", "LossConfig", "TrainConfig", "RuntimeConfig",
    "TokenizerConfig", "StudentConfig", "load_config", "check_types", "finalize", "resolve_vocab_size",
    "gradient_clip_norm",
    "optimizer_config_without_clipping", "to_yaml", "save_yaml",
]
