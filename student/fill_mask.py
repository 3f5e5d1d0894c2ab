r"""Fills in [MASK] in raw text with a student export: see the student work in one line.

  python -m student.fill_mask --export_dir students/kd/export --language es \
      --text "Hola [MASK] mundo" [--text "..."] [--top_k 5] [--model checkpoint]

  # several languages in one call: one --language per --text, in order
  python -m student.fill_mask --export_dir EXPORT --language en --text "The [MASK] is" \
      --language de --text "Das [MASK] ist"

Each text is tokenized with the export's tokenizer (student/tokenizer.py: the language's teacher
vocabulary in student ids); every literal "[MASK]" becomes the mask id. The tokenizer treats
special-token strings in text as text, so the text is split at "[MASK]" and the pieces are
tokenized on their own ("[" is punctuation for BERT, so the words around a mask are the same as
in the whole text). The student's masked-LM head gives a softmax over the whole student
vocabulary at every mask; the top-k tokens are printed with their probabilities, and the text
with every mask replaced by its best token. The five special tokens ([PAD] [UNK] [CLS] [SEP]
[MASK]) are left out of the top-k unless --include_special (probabilities stay those of the full
softmax).

The model is the export's SavedModel (`serving_default`), or with --model checkpoint the
tf-models checkpoint read into a student built from the export's params.yaml.

Output is the answer only; TensorFlow's and absl's INFO chatter shows with --verbosity 0.
Exit status 1 with a message naming the text for bad input: no [MASK], more pieces than the
model's max_position_embeddings, an unknown language without a fallback teacher.
"""

from __future__ import annotations

import dataclasses
import os
import sys

if __name__ == "__main__" and not any(a.startswith(("--verbosity", "-v")) for a in sys.argv):
    # TensorFlow's C++ start-up lines (CUDA probing, oneDNN) come at import, before any flag.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import yaml  # noqa: E402

from student import tokenizer as tokenizer_lib  # noqa: E402
from teacher_scoring.examples.tokenization import MASK, SPECIAL_TOKENS  # noqa: E402

MASK_TEXT = MASK
MODELS = ("saved_model", "checkpoint")


class FillMaskError(ValueError):
    """A text or an export cannot be used (the message names it)."""


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The top-k fillers of one [MASK]: tokens, student ids and probabilities, best first."""

    tokens: list[str]
    ids: list[int]
    probabilities: list[float]


@dataclasses.dataclass(frozen=True)
class FilledText:
    """One text: its language, the teacher whose tokenizer it went through, one Prediction per
    [MASK] (in text order), and the text with every mask replaced by its best token."""

    text: str
    language: str
    teacher: str
    predictions: list[Prediction]
    filled: str


def encode_masked(tokenizer: tokenizer_lib.StudentTokenizer, texts, languages,
                  max_length: int):
    """`[CLS] pieces [SEP]` with the mask id at every literal [MASK], padded to one batch.

    Args:
      tokenizer: the export's StudentTokenizer.
      texts: B raw texts, each with at least one "[MASK]".
      languages: B languages.
      max_length: the model's max_position_embeddings.

    Returns:
      (inputs, num_masks): inputs is a dict of int32 arrays input_word_ids / input_mask /
      input_type_ids [B, S] and masked_lm_positions [B, P] (S, P the batch's longest; padding
      positions 0); num_masks [B] the masks of each text.

    Raises:
      FillMaskError: a text without [MASK], or longer than max_length pieces with [CLS]/[SEP].
    """
    rows = []
    for text, language in zip(texts, languages):
        parts = text.split(MASK_TEXT)
        if len(parts) < 2:
            raise FillMaskError(f"text {text!r} has no {MASK_TEXT}")
        lm = tokenizer.for_language(language)
        pieces = lm.tokenize_with_offsets([tokenizer_lib.tokenization.clean_text(p)
                                           for p in parts])
        ids = [lm.cls_id]
        positions = []
        for i, part in enumerate(pieces):
            if i:
                positions.append(len(ids))
                ids.append(lm.mask_id)
            ids.extend(part.ids.tolist())
        ids.append(lm.sep_id)
        if len(ids) > max_length:
            raise FillMaskError(f"text {text!r} is {len(ids)} pieces with [CLS] and [SEP]; the "
                                f"model takes at most {max_length}")
        rows.append((ids, positions))
    seq = max(len(ids) for ids, _ in rows)
    slots = max(len(positions) for _, positions in rows)
    batch = len(rows)
    input_ids = np.zeros([batch, seq], np.int32)
    input_mask = np.zeros([batch, seq], np.int32)
    positions_array = np.zeros([batch, slots], np.int32)
    for row, (ids, positions) in enumerate(rows):
        input_ids[row, :len(ids)] = ids
        input_mask[row, :len(ids)] = 1
        positions_array[row, :len(positions)] = positions
    inputs = dict(input_word_ids=input_ids, input_mask=input_mask,
                  input_type_ids=np.zeros_like(input_ids), masked_lm_positions=positions_array)
    return inputs, np.array([len(p) for _, p in rows], np.int32)


def _read_yaml(path: str) -> dict:
    if not tf.io.gfile.exists(path):
        raise FillMaskError(f"{path}: missing (not a student export?)")
    with tf.io.gfile.GFile(path, "r") as f:
        return yaml.safe_load(f.read()) or {}


class MaskFiller:
    """A student export ready to fill masks.

    Args:
      export_dir: model_dir/export of a student run (with tokenizer/).
      model: `saved_model` (the `serving_default` signature) or `checkpoint` (the tf-models
        checkpoint in a student built from params.yaml).

    Raises:
      FillMaskError / tokenizer.TokenizerError: naming the missing or bad file.
    """

    def __init__(self, export_dir: str, model: str = "saved_model"):
        if model not in MODELS:
            raise FillMaskError(f"model must be one of {MODELS}, got {model!r}")
        self.export_dir = export_dir
        self.tokenizer = tokenizer_lib.StudentTokenizer.load(export_dir)
        vocab_path = os.path.join(export_dir, tokenizer_lib.STUDENT_VOCAB_FILENAME)
        self.vocab = tokenizer_lib.tokenization.read_vocab(vocab_path)
        encoder = _read_yaml(os.path.join(export_dir, "encoder_config.yaml"))
        self.max_length = int(encoder.get("bert_v2", {}).get("max_position_embeddings", 512))
        if model == "saved_model":
            path = os.path.join(export_dir, "saved_model")
            if not tf.io.gfile.exists(path):
                raise FillMaskError(f"{path}: missing (not a student export?)")
            serve = tf.saved_model.load(path).signatures["serving_default"]
            self._logits = lambda inputs: serve(
                **{k: tf.constant(v) for k, v in inputs.items()})["mlm_logits"]
        else:
            self._logits = self._checkpoint_model()

    def _checkpoint_model(self):
        from student import config as config_lib  # pylint: disable=import-outside-toplevel
        from student import model as model_lib  # pylint: disable=import-outside-toplevel

        config = config_lib.load_config(os.path.join(self.export_dir, "params.yaml"))
        directory = os.path.join(self.export_dir, "checkpoint")
        path = tf.train.latest_checkpoint(directory)
        if path is None:
            raise FillMaskError(f"{directory}: no checkpoint")
        pretrainer = model_lib.build_pretrainer(config.model)
        tf.train.Checkpoint(**pretrainer.checkpoint_items).read(path) \
            .expect_partial().assert_existing_objects_matched()
        return lambda inputs: pretrainer(
            {k: tf.constant(v) for k, v in inputs.items()}, training=False)["mlm_logits"]

    def fill(self, texts, languages, top_k: int = 5, include_special: bool = False
             ) -> list[FilledText]:
        """Predicts every [MASK] of every text (one model call for the batch).

        Args:
          texts: raw texts with "[MASK]".
          languages: one language for all texts (str) or one per text.
          top_k: fillers shown per mask.
          include_special: also rank the five special tokens.
        """
        texts = list(texts)
        if isinstance(languages, str):
            languages = [languages] * len(texts)
        languages = list(languages)
        if len(languages) != len(texts):
            raise FillMaskError(f"{len(texts)} texts but {len(languages)} languages: give one "
                                "language, or one per text")
        if not texts:
            return []
        if top_k < 1:
            raise FillMaskError(f"top_k must be >= 1, got {top_k}")
        inputs, num_masks = encode_masked(self.tokenizer, texts, languages, self.max_length)
        logits = np.asarray(self._logits(inputs), np.float64)          # [B, P, V]
        logits = logits - logits.max(-1, keepdims=True)
        probabilities = np.exp(logits)
        probabilities /= probabilities.sum(-1, keepdims=True)
        ranked = probabilities.copy()
        if not include_special:
            ranked[..., :len(SPECIAL_TOKENS)] = -1.0
        results = []
        for row, (text, language) in enumerate(zip(texts, languages)):
            predictions = []
            for slot in range(num_masks[row]):
                best = np.argsort(-ranked[row, slot], kind="stable")[:top_k]
                predictions.append(Prediction(
                    tokens=[self.vocab[i] for i in best], ids=[int(i) for i in best],
                    probabilities=[float(probabilities[row, slot, i]) for i in best]))
            parts = text.split(MASK_TEXT)
            filled = parts[0]
            for prediction, part in zip(predictions, parts[1:]):
                token = prediction.tokens[0]
                if token.startswith("##"):
                    filled = filled.rstrip() + token[2:]
                else:
                    filled += token
                filled += part
            results.append(FilledText(text=text, language=language,
                                      teacher=self.tokenizer.teacher_for(language),
                                      predictions=predictions, filled=filled))
        return results


def format_results(results: list[FilledText]) -> str:
    """The command's output: per text, the filled text and the top-k of every mask."""
    lines = []
    for result in results:
        lines.append(f"[{result.language}] {result.text}")
        lines.append(f"  -> {result.filled}")
        for n, prediction in enumerate(result.predictions, 1):
            guesses = "  ".join(f"{token} {p:.3f}" for token, p in
                                zip(prediction.tokens, prediction.probabilities))
            lines.append(f"  [MASK] {n}: {guesses}")
    return "\n".join(lines)


def main(argv) -> int:
    from absl import flags  # pylint: disable=import-outside-toplevel
    from absl import logging  # pylint: disable=import-outside-toplevel

    FLAGS = flags.FLAGS  # pylint: disable=invalid-name
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 2
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
        tf.get_logger().setLevel("ERROR")
    languages = FLAGS.language
    if len(languages) not in (1, len(FLAGS.text)):
        print(f"error: {len(FLAGS.text)} --text but {len(languages)} --language: give one "
              "--language, or one per --text in the same order", file=sys.stderr)
        return 1
    try:
        filler = MaskFiller(FLAGS.export_dir, FLAGS.model)
        results = filler.fill(FLAGS.text, languages[0] if len(languages) == 1 else languages,
                              FLAGS.top_k, FLAGS.include_special)
    except (FillMaskError, tokenizer_lib.TokenizerError,
            tokenizer_lib.tokenization.VocabError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(format_results(results))
    return 0


def _define_flags() -> None:
    from absl import flags  # pylint: disable=import-outside-toplevel

    flags.DEFINE_string("export_dir", None, "The student export (model_dir/export).")
    flags.DEFINE_multi_string("language", None, "Language of the texts: once for all, or once "
                              "per --text in the same order.")
    flags.DEFINE_multi_string("text", None, "A text with one or more [MASK]; repeat for more.")
    flags.DEFINE_integer("top_k", 5, "Fillers shown per [MASK].")
    flags.DEFINE_enum("model", "saved_model", MODELS, "Which part of the export to run.")
    flags.DEFINE_bool("include_special", False, "Rank [PAD] [UNK] [CLS] [SEP] [MASK] too.")
    flags.mark_flags_as_required(["export_dir", "language", "text"])


if __name__ == "__main__":
    from absl import app  # pylint: disable=import-outside-toplevel
    _define_flags()
    app.run(lambda argv: sys.exit(main(argv)))
