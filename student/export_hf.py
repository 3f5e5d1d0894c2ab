r"""Hugging Face export of a trained student: a BertForMaskedLM folder and its tokenizers.

  python -m student.export_hf --export_dir RUN/export --output_dir RUN/hf [--overwrite]

reads a student export (`student/export.py`: checkpoint/, params.yaml, vocab.txt, and the
student tokenizer in tokenizer/, `student/tokenizer.py`) and writes

  OUT/
    config.json          transformers BertConfig (model_type bert, architectures
                         [BertForMaskedLM]); hidden_act "gelu_new" for tf-models' tanh GELU,
                         "gelu" for the exact one; layer_norm_eps 1e-12; the student's sizes,
                         max_position_embeddings, type_vocab_size and dropout rates.
    model.safetensors    every BertForMaskedLM weight: embeddings, layers, the MLM head
                         (cls.predictions.transform.* and cls.predictions.bias; the decoder is
                         tied to the word embeddings). No pooler: BertForMaskedLM has none, and
                         the student's pooler is never trained (no NSP), so nothing is lost.
    tokenizers/<lang>/   one tokenizer a language the student was trained on:
                         tokenizer.json, tokenizer_config.json, special_tokens_map.json, vocab.txt
    languages/<lang>/    the model for that language, ready for pipeline("fill-mask"): the same
                         weights and config.json, and the language's tokenizer files, except that
                         the output bias is MASKED_BIAS (-1e4) at every id the language's
                         tokenizer cannot produce (see "Fill-mask" below); languages served by
                         one teacher share one model.safetensors (a hard link where the file
                         system allows). Left out with language_models=False (--nolanguage_models).
    vocab.txt, tokenizer.json, tokenizer_config.json, special_tokens_map.json
                         the default tokenizer (see `default_teacher`), so that
                         `AutoTokenizer.from_pretrained(OUT)` works too.
    languages.json       language -> {teacher, lower_case, tokenizer folder}; the default.
    README.md            the model card.

Tokenizers. The student sees each language through one teacher's WordPiece tokenizer (its vocab
and casing), its ids mapped to student ids (`student.tokenizer`). The export's
`tokenizer/<teacher>.vocab.txt` is that teacher's vocabulary in student id space (line i =
student token i, or a placeholder WordPiece never produces), so a WordPiece tokenizer over it
yields student ids directly. Each language folder holds such a tokenizer, built with the Rust
`tokenizers` library and saved as tokenizer.json (`tokenizer_class` "PreTrainedTokenizerFast",
which `AutoTokenizer` loads in transformers 4 and 5). Its pipeline is the original (slow) BERT
tokenizer's, which `teacher_scoring.examples.tokenization.TeacherTokenizer` reproduces
(docs/tokenizer_parity.md): clean-up, NFC, for an uncased teacher `str.lower()`, NFD and removal
of nonspacing marks, then whitespace, punctuation and CJK splitting and WordPiece, with every
character class taken from Python's `unicodedata` (`build_hf_tokenizer`). transformers' own
`BertTokenizer` class would not do: it rebuilds its normalizer from `do_lower_case`, without
the NFC step (non-NFC text such as the bundled Hindi gets other ids) and with the Rust crate's
Unicode tables (unassigned characters kept, newer punctuation and CJK Extension E not split).
The tokenizer adds [CLS] ... [SEP] (and [SEP] B [SEP] with type ids 1 for pairs), pads with
[PAD]=0; a literal "[MASK]" in the text is the mask token (for `pipeline("fill-mask")`), whereas
the project tokenizer reads special-token strings as text. `model_max_length` is the student's
training sequence length S (data.seq_length): positions beyond it were never trained.

Fill-mask. The root model is the student as trained: its MLM head scores the whole union
vocabulary. A language's tokenizer holds a placeholder `[md-unused-i]` at every id its teacher
lacks, so the root model with that tokenizer can predict, and `pipeline("fill-mask")` then shows,
a placeholder (a token of another teacher; seen on es held-out text). `languages/<lang>/` is the
model of that language: its output bias is MASKED_BIAS at the ids whose line in the language's
vocab.txt is not the student token, so their logits are about 1e4 below every token the language
can produce (softmax probability 0 in float32 and float16) and fill-mask shows only the
language's own tokens, ranked and scored as the student's softmax restricted to them. Every other
weight, and the logits at the language's ids, are the root model's.

Refused, before anything is written (the message names the config field and value): a
factorised word embedding (`model.encoder.bert_v2.embedding_size` != hidden_size, e.g.
Student_MuRIL's 256), which BertForMaskedLM cannot represent (it has no embedding projection);
pre-LayerNorm layers (`norm_first`); `output_range`; an MLM-head activation different from the
encoder's. A missing export file is named. An existing non-empty output folder is only replaced
with --overwrite, and only if it is a previous export (has config.json); the folder is written
to a staging folder beside it and moved into place at the end, so a failed export leaves nothing
half-written.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import os
import shutil
import sys
import tempfile
import unicodedata
from typing import Mapping, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from tokenizers import AddedToken, Regex, Tokenizer  # noqa: E402
from tokenizers import decoders, normalizers, pre_tokenizers, processors  # noqa: E402
from tokenizers.models import WordPiece  # noqa: E402

from student import config as config_lib  # noqa: E402
from student import model as model_lib  # noqa: E402
from student import tokenizer as tokenizer_lib  # noqa: E402
from teacher_scoring.teachers import export as teacher_export  # noqa: E402
from teacher_scoring.examples import tokenization  # noqa: E402
from teacher_scoring.teachers.loaders import bert_mlm  # noqa: E402
from teacher_scoring.teachers.loaders import hf_folder  # noqa: E402

FLAGS = flags.FLAGS

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
VOCAB_FILE = "vocab.txt"
LANGUAGES_FILE = "languages.json"
MODEL_CARD_FILE = "README.md"
TOKENIZERS_DIR = "tokenizers"
LANGUAGE_MODELS_DIR = "languages"
OUTPUT_BIAS = "cls.predictions.bias"  # BertForMaskedLM's output bias (the decoder is tied)
# The output bias of ids a language's tokenizer cannot produce, in its languages/<lang> model: far
# below any logit of a trained BERT (|logit| of the order of 10), representable in float16.
MASKED_BIAS = -1.0e4

# In the student export (student/export.py, student/tokenizer.py).
EXPORT_PARAMS = "params.yaml"
EXPORT_VOCAB = "vocab.txt"
EXPORT_CHECKPOINT_DIR = "checkpoint"
EXPORT_TOKENIZER_DIR = "tokenizer"
EXPORT_TOKENIZER_JSON = "student_tokenizer.json"

# transformers' WordpieceTokenizer / tokenizers' WordPiece limit (longer words are one [UNK]).
MAX_INPUT_CHARS_PER_WORD = 100


class ExportHFError(ValueError):
    """The export cannot be written; the message names the file, field or value."""


# ----------------------------------------------------------------------------------------------
# Reading and checking the student export.


def _exists(path: str) -> bool:
    return tf.io.gfile.exists(path)


def check_export_dir(export_dir: str) -> str:
    """Checks that `export_dir` has every piece the HF export reads.

    Returns:
      The checkpoint prefix (export_dir/checkpoint/bert_model-STEP).

    Raises:
      ExportHFError naming the first missing file.
    """
    if not _exists(export_dir):
        raise ExportHFError(f"{export_dir}: no such folder (expected a student export, "
                            "model_dir/export of student/train.py)")

    hint = "(a student export written by student/train.py has it)"
    tokenizer_hint = ("(the export has no student tokenizer: write it with python -m "
                      "student.tokenizer --export_dir ... --student_vocab ... --shards ...)")
    for name, why in ((EXPORT_PARAMS, hint), (EXPORT_VOCAB, hint),
                      (os.path.join(EXPORT_CHECKPOINT_DIR, "checkpoint"), hint),
                      (os.path.join(EXPORT_TOKENIZER_DIR, EXPORT_TOKENIZER_JSON),
                       tokenizer_hint)):
        path = os.path.join(export_dir, name)
        if not _exists(path):
            raise ExportHFError(f"{path} is missing {why}")
    checkpoint_dir = os.path.join(export_dir, EXPORT_CHECKPOINT_DIR)
    prefix = tf.train.latest_checkpoint(checkpoint_dir)
    if prefix is None or not _exists(prefix + ".index"):
        raise ExportHFError(f"{os.path.join(checkpoint_dir, 'checkpoint')} names no checkpoint "
                            f"whose .index file exists in {checkpoint_dir}")
    return prefix


def read_student_config(export_dir: str):
    """The run's StudentConfig from export_dir/params.yaml."""
    path = os.path.join(export_dir, EXPORT_PARAMS)
    try:
        return config_lib.load_config(path)
    except config_lib.ConfigError as error:
        raise ExportHFError(f"{path}: {error}") from error


def check_representable(config, where: str) -> None:
    """Refuses a student BertForMaskedLM cannot hold exactly.

    Args:
      config: the StudentConfig.
      where: the file it came from, for the message.

    Raises:
      ExportHFError naming the config field and its value.
    """
    if config.model.encoder.type != "bert_v2":
        raise ExportHFError(f"{where}: field 'model.encoder.type' = "
                            f"{config.model.encoder.type!r}; only 'bert_v2' students export")
    encoder = config.model.encoder.bert_v2
    field = "model.encoder.bert_v2"
    if encoder.embedding_size is not None and encoder.embedding_size != encoder.hidden_size:
        raise ExportHFError(
            f"{where}: field '{field}.embedding_size' = {encoder.embedding_size} (hidden_size "
            f"{encoder.hidden_size}): the student factorises its word embeddings into "
            f"[vocab, {encoder.embedding_size}] x [{encoder.embedding_size}, "
            f"{encoder.hidden_size}], which Hugging Face's BertForMaskedLM cannot represent (it "
            "has no embedding projection); such a student is not exported. Use the SavedModel "
            "or the tf-models checkpoint in the export folder instead")
    if encoder.norm_first:
        raise ExportHFError(f"{where}: field '{field}.norm_first' = True: BertForMaskedLM is a "
                            "post-LayerNorm model")
    if encoder.output_range is not None:
        raise ExportHFError(f"{where}: field '{field}.output_range' = {encoder.output_range}: "
                            "BertForMaskedLM computes every position of the last layer")


def checkpoint_step(prefix: str) -> int | None:
    """The step in a checkpoint prefix `.../bert_model-STEP` (None if it has none)."""
    tail = prefix.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


def load_pretrainer(config, checkpoint_prefix: str):
    """The student BertPretrainerV2 restored from the export checkpoint (every weight)."""
    pretrainer = model_lib.build_pretrainer(config.model)
    checkpoint = tf.train.Checkpoint(**pretrainer.checkpoint_items)
    try:
        checkpoint.read(checkpoint_prefix).assert_existing_objects_matched().expect_partial()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        raise ExportHFError(f"{checkpoint_prefix}: does not restore the student that "
                            f"params.yaml describes ({error})") from error
    return pretrainer


# ----------------------------------------------------------------------------------------------
# Tokenizers.


@dataclasses.dataclass(frozen=True)
class LanguageTokenizer:
    """What a language's HF tokenizer is made of."""
    language: str
    teacher: str
    lower_case: bool


# HF BERT's `_is_chinese_char` ranges (the CJK Unified Ideographs blocks and extensions, and the
# compatibility ideographs): each such character is a word of its own.
CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
              (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def _regex_class(codepoints) -> str:
    """A `tokenizers` (Oniguruma) character class matching exactly `codepoints`."""
    return "[" + "".join(f"\\x{{{lo:X}}}" if lo == hi else f"\\x{{{lo:X}}}-\\x{{{hi:X}}}"
                         for lo, hi in tokenization.codepoint_ranges(codepoints)) + "]"


@functools.lru_cache(maxsize=None)
def unicode_classes() -> dict[str, str]:
    """The character classes of BERT's basic tokenization, from Python's `unicodedata` (what the
    slow BERT tokenizer and `teacher_scoring.examples.tokenization` use), as regex classes:

      removed      the clean-up deletes them: every `C*` character but tab, newline and carriage
                   return (control, format, unassigned, private use, surrogate), U+FFFD;
      whitespace   become a space: tab, newline, carriage return, `Zs`, U+2028, U+2029;
      nonspacing   `Mn`, dropped by an uncased teacher's accent stripping (after NFD);
      split        a word of their own: punctuation (`P*` and the ASCII symbols
                   !"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~) and CJK ideographs.

    Rust `tokenizers`' own BertNormalizer / BertPreTokenizer use other Unicode tables (e.g. they
    keep unassigned code points and newer format characters, miss CJK Extension E); these
    classes make the exported tokenizer follow the running Python's Unicode version, as the
    project tokenizer does. One scan of all code points (about a second).
    """
    removed, whitespace, nonspacing, split = [0xFFFD], [0x9, 0xA, 0xD], [], []
    ascii_symbols = set(range(33, 48)) | set(range(58, 65)) | set(range(91, 97)) | \
        set(range(123, 127))
    for cp in range(sys.maxunicode + 1):
        category = unicodedata.category(chr(cp))
        if category[0] == "C":
            if cp not in (0x9, 0xA, 0xD):
                removed.append(cp)
        elif category in ("Zs", "Zl", "Zp"):
            if cp != 0x20:
                whitespace.append(cp)
        elif category == "Mn":
            nonspacing.append(cp)
        if category[0] == "P" or cp in ascii_symbols:
            split.append(cp)
    split += [cp for lo, hi in CJK_RANGES for cp in range(lo, hi + 1)]
    return {"removed": _regex_class(removed), "whitespace": _regex_class(whitespace),
            "nonspacing": _regex_class(nonspacing), "split": _regex_class(set(split)),
            "final_sigma": _final_sigma_pattern()}


def _final_sigma_pattern(max_ignorable: int = 3) -> str:
    """A regex matching the capital sigmas that Python's `str.lower()` turns into final sigma.

    Python (Unicode's Final_Sigma condition) lower-cases U+03A3 to U+03C2 when it is preceded
    by a cased letter, skipping case-ignorable characters, and not followed by one the same
    way; `tokenizers`' Lowercase maps every U+03A3 to U+03C3. The cased and case-ignorable sets
    are read off `str.lower()` itself. The look-behind allows up to `max_ignorable`
    case-ignorable characters between the letter and the sigma (Oniguruma look-behinds have
    fixed lengths).
    """
    sigma = "\u03a3"
    stops, ignorable = [], []  # cased and not case-ignorable; case-ignorable
    for cp in range(sys.maxunicode + 1):
        c = chr(cp)
        if 0xD800 <= cp <= 0xDFFF:
            continue
        if (c + sigma).lower().endswith("\u03c2"):
            stops.append(cp)
        elif ("A" + c + sigma).lower().endswith("\u03c2"):
            ignorable.append(cp)
    stop, skip = _regex_class(stops), _regex_class(ignorable)
    behind = "|".join(stop + skip * n for n in range(max_ignorable + 1))
    return f"(?<={behind})\\x{{3A3}}(?!{skip}*{stop})"


def build_hf_tokenizer(vocab: Sequence[str], lower_case: bool):
    """A `tokenizers.Tokenizer` that gives BERT WordPiece ids over `vocab` exactly as the slow BERT
    tokenizer (and `TeacherTokenizer`) do.

    The pipeline is the slow tokenizer's, with its character classes taken from Python's
    `unicodedata` (`unicode_classes`):
      normalizer      delete `removed`, `whitespace` -> " ", NFC; uncased: final capital
                      sigmas -> U+03C2 (as `str.lower()`), lower-case, NFD, delete `nonspacing`;
      pre-tokenizer   split on spaces, then every `split` character (punctuation, CJK) alone;
      model           WordPiece ("##", [UNK], words over 100 characters are one [UNK]);
      post-processor  [CLS] A [SEP] / [CLS] A [SEP] B [SEP] (type ids 0 / 1).
    (The slow tokenizer puts spaces around CJK characters before NFC and lower-casing; neither
    step maps a character into or out of the CJK ranges, so isolating them afterwards is the
    same.)

    Args:
      vocab: the student-space vocabulary of one teacher (id = index); ids 0-4 must be
        [PAD] [UNK] [CLS] [SEP] [MASK] (the student's fixed special ids).
      lower_case: the teacher's casing.

    Returns:
      The tokenizer.
    """
    classes = unicode_classes()
    special = tokenization.SPECIAL_TOKENS
    tokenizer = Tokenizer(WordPiece({token: i for i, token in enumerate(vocab)},
                                    unk_token=tokenization.UNK, continuing_subword_prefix="##",
                                    max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD))
    steps = [normalizers.Replace(Regex(classes["removed"]), ""),
             normalizers.Replace(Regex(classes["whitespace"]), " "),
             normalizers.NFC()]
    if lower_case:
        steps += [normalizers.Replace(Regex(classes["final_sigma"]), "\u03c2"),
                  normalizers.Lowercase(), normalizers.NFD(),
                  normalizers.Replace(Regex(classes["nonspacing"]), "")]
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Split(Regex(classes["split"]), behavior="isolated")])
    cls_id, sep_id = special.index(tokenization.CLS), special.index(tokenization.SEP)
    cls, sep = tokenization.CLS, tokenization.SEP
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0", pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, cls_id), (sep, sep_id)])
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False)
                                  for token in special])
    return tokenizer


def tokenizer_config(lower_case: bool, model_max_length: int) -> dict:
    """tokenizer_config.json: the fast tokenizer from tokenizer.json, BERT's special tokens; the
    BERT casing fields also let the slow `BertTokenizerLegacy` read vocab.txt the same way."""
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "do_lower_case": lower_case,
        "strip_accents": None,
        "tokenize_chinese_chars": True,
        "model_max_length": model_max_length,
        "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
        "padding_side": "right",
        "clean_up_tokenization_spaces": True,
        **special_tokens_map(),
    }


def special_tokens_map() -> dict:

    return {"unk_token": tokenization.UNK, "sep_token": tokenization.SEP,
            "pad_token": tokenization.PAD, "cls_token": tokenization.CLS,
            "mask_token": tokenization.MASK}


def hf_vocab(student_space_vocab: Sequence[str]) -> list[str]:
    """A teacher's student-space vocabulary with the special tokens at ids 0-4.

    `StudentTokenizer.load` has checked every line (the student token or a placeholder, specials
    at 0-4); this only makes sure the five specials the HF tokenizer declares are where the
    student has them.
    """
    vocab = list(student_space_vocab)
    vocab[:len(tokenization.SPECIAL_TOKENS)] = tokenization.SPECIAL_TOKENS
    return vocab


def default_teacher(languages: Mapping[str, str], fallback_teacher: str | None) -> str:
    """The teacher of the root tokenizer.

    The fallback teacher when one is configured (what the project tokenizer uses for a language
    the student was not trained on); otherwise the teacher serving the most languages, ties to
    the first name in alphabetical order.
    """
    if fallback_teacher:
        return fallback_teacher
    served = collections.Counter(languages.values())
    most = max(served.values())
    return sorted(name for name, n in served.items() if n == most)[0]


def write_tokenizer(folder: str, vocab: Sequence[str], lower_case: bool,
                    model_max_length: int) -> None:
    """Writes tokenizer.json, tokenizer_config.json, special_tokens_map.json and vocab.txt."""
    os.makedirs(folder, exist_ok=True)
    build_hf_tokenizer(vocab, lower_case).save(os.path.join(folder, TOKENIZER_FILE))
    _write_json(os.path.join(folder, TOKENIZER_CONFIG_FILE),
                tokenizer_config(lower_case, model_max_length))
    _write_json(os.path.join(folder, SPECIAL_TOKENS_MAP_FILE), special_tokens_map())
    with open(os.path.join(folder, VOCAB_FILE), "w", encoding="utf-8") as f:
        f.write("".join(token + "\n" for token in vocab))


def producible_ids(vocab: Sequence[str], student_tokens: Sequence[str]) -> np.ndarray:
    """bool [V]: the student ids a language's tokenizer can produce (and so decodes to a word).

    Line i of the tokenizer's vocab.txt (`vocab`, a teacher's student-space vocabulary) is either
    the student token i, which WordPiece can produce, or a placeholder, which it never produces.
    """
    if len(vocab) != len(student_tokens):
        raise ExportHFError(f"a tokenizer vocabulary has {len(vocab)} lines but the student "
                            f"vocabulary {len(student_tokens)}")
    return np.array([a == b for a, b in zip(vocab, student_tokens)], dtype=bool)


def language_output_bias(bias: np.ndarray, producible: np.ndarray) -> np.ndarray:
    """The output bias of a language's model: the student's at `producible` ids, MASKED_BIAS
    elsewhere."""
    return np.where(producible, bias, np.asarray(MASKED_BIAS, bias.dtype)).astype(bias.dtype)


def write_language_models(root: str, languages: Mapping[str, "LanguageTokenizer"],
                          vocabs: Mapping[str, Sequence[str]], student_tokens: Sequence[str],
                          model_max_length: int) -> dict[str, str]:
    """Writes languages/<lang>/ for every language: the root model (root/config.json,
    root/model.safetensors) with its output bias masked to the language's producible ids, and
    the language's tokenizer. Languages of one teacher share one weights file (hard link, else
    a copy). Returns language -> folder (relative to root)."""
    import safetensors.numpy  # pylint: disable=import-outside-toplevel

    tensors = safetensors.numpy.load_file(os.path.join(root, WEIGHTS_FILE))
    if OUTPUT_BIAS not in tensors:
        raise ExportHFError(f"{os.path.join(root, WEIGHTS_FILE)}: no {OUTPUT_BIAS!r}")
    bias = tensors[OUTPUT_BIAS]
    written: dict[str, str] = {}  # teacher -> its first weights file
    folders = {}
    for language, entry in sorted(languages.items()):
        relative = os.path.join(LANGUAGE_MODELS_DIR, language)
        folder = os.path.join(root, relative)
        write_tokenizer(folder, vocabs[entry.teacher], entry.lower_case, model_max_length)
        shutil.copyfile(os.path.join(root, CONFIG_FILE), os.path.join(folder, CONFIG_FILE))
        weights = os.path.join(folder, WEIGHTS_FILE)
        if entry.teacher in written:
            try:
                os.link(written[entry.teacher], weights)
            except OSError:
                shutil.copyfile(written[entry.teacher], weights)
        else:
            producible = producible_ids(vocabs[entry.teacher], student_tokens)
            safetensors.numpy.save_file(
                {**tensors, OUTPUT_BIAS: language_output_bias(bias, producible)}, weights,
                metadata={"format": "pt"})
            written[entry.teacher] = weights
        folders[language] = relative
    return folders


def _write_json(path: str, data) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


# ----------------------------------------------------------------------------------------------
# The model card.


@dataclasses.dataclass(frozen=True)
class TeacherInfo:
    """A teacher as the model card lists it."""
    name: str
    lower_case: bool
    languages: list[str]  # the languages whose tokenizer is this teacher's
    examples: dict[str, int]  # language -> its copies in the training shards
    vocab_sha256: str  # of the teacher's own vocab.txt


@dataclasses.dataclass
class CardInfo:
    """Everything the model card states."""
    bert: object  # bert_mlm.BertMLMConfig
    num_parameters: int
    step: int | None
    seq_length: int
    vocab_sha256: str
    languages: dict[str, LanguageTokenizer]
    default_teacher: str
    fallback_teacher: str | None
    teachers: dict[str, TeacherInfo]
    language_models: bool = True  # languages/<lang>/ written


def model_card(info: CardInfo) -> str:
    """README.md of the HF folder (Markdown)."""
    bert = info.bert
    languages = sorted(info.languages)
    example = languages[0]
    trained = (f"step {info.step:,} of the student run" if info.step is not None
               else "the exported checkpoint of the student run")
    lines = [
        "# MergeDistill student (BERT masked LM)",
        "",
        "A multilingual BERT masked language model distilled from pre-trained teacher masked "
        "LMs with MergeDistill (Khanuja et al., 2021, \"MergeDistill: Merging Pre-trained "
        "Language Models using Distillation\"), exported from the project's TensorFlow "
        "checkpoint to Hugging Face `BertForMaskedLM` by `python -m student.export_hf`. Its "
        "vocabulary is the union of the teachers' WordPiece vocabularies, and the student saw "
        "each language tokenized by one teacher (its vocabulary and casing), so **tokenize text "
        "with the tokenizer of its language**.",
        "",
        f"- Architecture: {bert.num_layers} layers, hidden size {bert.hidden_size}, "
        f"{bert.num_attention_heads} attention heads, intermediate size "
        f"{bert.intermediate_size}, `hidden_act` `{_hf_act(bert.hidden_act)}`, "
        f"{bert.vocab_size:,} tokens, {bert.max_position_embeddings} positions, "
        f"{bert.type_vocab_size} token types; {info.num_parameters:,} parameters (MLM head "
        "included, its decoder tied to the word embeddings).",
        f"- Weights: {trained}, trained on sequences of {info.seq_length} tokens (the "
        "tokenizers' `model_max_length`; later positions were never trained).",
        "- No pooler: BertForMaskedLM has none and the student never trains one, so a "
        "sequence classifier built on these weights starts its pooler from scratch.",
        "",
        "## Languages and tokenizers",
        "",
        "| language | tokenizer folder | teacher | casing |",
        "|---|---|---|---|",
    ]
    for language in languages:
        entry = info.languages[language]
        lines.append(f"| {language} | `{TOKENIZERS_DIR}/{language}` | {entry.teacher} | "
                     f"{_casing(entry.lower_case)} |")
    root_languages = [lang for lang in languages
                      if info.languages[lang].teacher == info.default_teacher]
    why = ("the fallback teacher, which the project's tokenizer uses for languages the student "
           "was not trained on" if info.fallback_teacher == info.default_teacher
           else "the teacher of the most languages")
    served = (f"; it serves {', '.join(root_languages)}" if root_languages else "")
    lines += [
        "",
        f"The tokenizer at the folder's root is teacher {info.default_teacher}'s ({why}"
        f"{served}). `{LANGUAGES_FILE}` holds the same map.",
        "",
        "## Use",
        "",
        "```python",
        "from transformers import AutoTokenizer, BertForMaskedLM",
        "model = BertForMaskedLM.from_pretrained(\"PATH\")",
        f"tokenizer = AutoTokenizer.from_pretrained(\"PATH/{TOKENIZERS_DIR}/{example}\")",
        "```",
        "",
        f"(On the Hub: `AutoTokenizer.from_pretrained(REPO, subfolder=\"{TOKENIZERS_DIR}/"
        f"{example}\")`.) A tokenizer adds `[CLS] ... [SEP]` (`[CLS] A [SEP] B [SEP]` with "
        "token type ids 1 on B for pairs) and gives exactly the student ids of the project's "
        "tokenizer (`student.tokenizer.StudentTokenizer`). A literal `[MASK]` in the text is "
        "the mask token.",
        "",
        *(["For fill-mask use the language's folder, which holds its tokenizer and the model "
           "with its output restricted to the tokens that tokenizer can produce:",
           "",
           "```python",
           "from transformers import pipeline",
           f"fill = pipeline(\"fill-mask\", model=\"PATH/{LANGUAGE_MODELS_DIR}/{example}\")",
           "```",
           "",
           f"(`{LANGUAGE_MODELS_DIR}/<lang>` differs from the root model only in the output "
           f"bias: {MASKED_BIAS:g} at the ids the language's tokenizer never produces.) The "
           "root model scores the whole union vocabulary, so with a language's tokenizer its "
           "best ids can be tokens of another teacher, which that tokenizer shows as "
           "placeholders (`[md-unused-i]`).", ""]
          if info.language_models else
          ["The root model scores the whole union vocabulary, so with a language's tokenizer "
           "its best ids can be tokens of another teacher, which that tokenizer shows as "
           "placeholders (`[md-unused-i]`); this export was written without the per-language "
           "fill-mask models (`--nolanguage_models`).", ""]),
        "## Teachers and vocabulary",
        "",
        f"Student vocabulary: {bert.vocab_size:,} tokens, sha256 `{info.vocab_sha256}`.",
        "",
        "| teacher | casing | tokenizer of | training copies by language | teacher vocab.txt "
        "sha256 |",
        "|---|---|---|---|---|",
    ]
    for name in sorted(info.teachers):
        teacher = info.teachers[name]
        copies = ", ".join(f"{lang} {n:,}" for lang, n in sorted(teacher.examples.items()))
        lines.append(f"| {name} | {_casing(teacher.lower_case)} | "
                     f"{', '.join(teacher.languages) or '-'} | {copies or '-'} | "
                     f"`{teacher.vocab_sha256 or 'unknown'}` |")
    lines += [
        "",
        "A tokenizer's vocab.txt is its teacher's vocabulary renumbered in student ids: line "
        "i is student token i if the teacher has it, else a placeholder (`[md-unused-i]`) that "
        "WordPiece never produces.",
        "",
    ]
    return "\n".join(lines)


def _casing(lower_case: bool) -> str:
    return "uncased" if lower_case else "cased"


def _hf_act(canonical: str) -> str:
    return hf_folder.HIDDEN_ACT_NAME[canonical]


# ----------------------------------------------------------------------------------------------
# The export.


def _check_output_dir(output_dir: str, overwrite: bool) -> None:
    if os.path.isfile(output_dir):
        raise ExportHFError(f"{output_dir}: is a file, not a folder")
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        if not overwrite:
            raise ExportHFError(f"{output_dir}: exists and is not empty (pass --overwrite to "
                                "replace it)")
        if not os.path.exists(os.path.join(output_dir, CONFIG_FILE)):
            raise ExportHFError(f"{output_dir}: exists, is not empty and has no {CONFIG_FILE}: "
                                "not a previous Hugging Face export, so --overwrite does not "
                                "replace it")


def export_hf(export_dir: str, output_dir: str, overwrite: bool = False,
              language_models: bool = True) -> dict:
    """Writes the Hugging Face folder of a student export (layout in the module docstring).

    Args:
      export_dir: model_dir/export of student/train.py, with the student tokenizer.
      output_dir: the folder to write (local).
      overwrite: replace an existing previous export at output_dir.
      language_models: also write languages/<lang>/, a fill-mask model per language (one
        weights file per teacher serving a trained language).

    Returns:
      A summary: output_dir, languages (lang -> tokenizer folder), language_models (lang ->
      model folder; empty without them), default_teacher, step.

    Raises:
      ExportHFError: a missing export file, a student HF cannot represent, an output folder that
        exists (before anything is written).
    """
    output_dir = os.path.abspath(output_dir)
    _check_output_dir(output_dir, overwrite)
    checkpoint_prefix = check_export_dir(export_dir)
    config = read_student_config(export_dir)
    params_path = os.path.join(export_dir, EXPORT_PARAMS)
    check_representable(config, params_path)

    try:
        student_tokenizer = tokenizer_lib.StudentTokenizer.load(export_dir)
    except tokenizer_lib.TokenizerError as error:
        raise ExportHFError(str(error)) from error
    tokenizer_json = os.path.join(export_dir, EXPORT_TOKENIZER_DIR, EXPORT_TOKENIZER_JSON)
    if student_tokenizer.vocab_size != config.vocab_size:
        raise ExportHFError(f"{tokenizer_json}: vocab_size {student_tokenizer.vocab_size} but "
                            f"{params_path} field 'model.encoder.bert_v2.vocab_size' is "
                            f"{config.vocab_size}")
    if not student_tokenizer.languages:
        raise ExportHFError(f"{tokenizer_json}: the student tokenizer has no language")
    languages = {}
    for language, teacher in student_tokenizer.teacher_for_language.items():
        languages[language] = LanguageTokenizer(language, teacher,
                                                student_tokenizer.lower_case(teacher))
    teachers = sorted({entry.teacher for entry in languages.values()})
    root_teacher = default_teacher(student_tokenizer.teacher_for_language,
                                   student_tokenizer.fallback_teacher)
    if root_teacher not in teachers:
        teachers.append(root_teacher)  # a fallback teacher that no trained language uses
    vocabs = {name: hf_vocab(student_tokenizer.student_space_vocab(name)) for name in teachers}
    student_tokens = tokenization.read_vocab(os.path.join(export_dir, EXPORT_VOCAB))

    # The model (still nothing written): restore, then check it is a BERT the format holds.
    pretrainer = load_pretrainer(config, checkpoint_prefix)
    try:
        bert = bert_mlm.config_from_model(pretrainer.encoder_network, pretrainer.masked_lm)
    except ValueError as error:
        raise ExportHFError(f"{params_path}: {error}") from error
    encoder_config = config.model.encoder.bert_v2
    seq_length = int(config.data.seq_length)

    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(output_dir)}.staging-", dir=parent)
    try:
        teacher_export.write_hf_model(
            pretrainer.encoder_network, pretrainer.masked_lm, bert, staging, with_pooler=False,
            config_overrides={"hidden_dropout_prob": float(encoder_config.dropout_rate),
                              "attention_probs_dropout_prob":
                                  float(encoder_config.attention_dropout_rate)})
        folders = {}
        for language, entry in sorted(languages.items()):
            folder = os.path.join(TOKENIZERS_DIR, language)
            write_tokenizer(os.path.join(staging, folder), vocabs[entry.teacher],
                            entry.lower_case, seq_length)
            folders[language] = folder
        write_tokenizer(staging, vocabs[root_teacher], student_tokenizer.lower_case(root_teacher),
                        seq_length)
        model_folders = (write_language_models(staging, languages, vocabs, student_tokens,
                                               seq_length) if language_models else {})
        _write_json(os.path.join(staging, LANGUAGES_FILE), {
            "default_teacher": root_teacher,
            "fallback_teacher": student_tokenizer.fallback_teacher,
            "languages": {lang: {"teacher": entry.teacher, "lower_case": entry.lower_case,
                                 "tokenizer": folders[lang],
                                 **({"model": model_folders[lang]} if model_folders else {})}
                          for lang, entry in sorted(languages.items())},
            "vocab_sha256": student_tokenizer.vocab_sha256,
        })
        teacher_languages = {
            name: sorted(lang for lang, entry in languages.items() if entry.teacher == name)
            for name in teachers}
        num_parameters = sum(int(np.prod(shape)) for shape in bert_mlm.google_variable_shapes(
            bert, with_pooler=False).values())
        step = checkpoint_step(checkpoint_prefix)
        described = student_tokenizer.config_dict()["teachers"]
        with open(os.path.join(staging, MODEL_CARD_FILE), "w", encoding="utf-8") as f:
            f.write(model_card(CardInfo(
                bert=bert, num_parameters=num_parameters, step=step, seq_length=seq_length,
                vocab_sha256=student_tokenizer.vocab_sha256, languages=languages,
                default_teacher=root_teacher, fallback_teacher=student_tokenizer.fallback_teacher,
                teachers={name: TeacherInfo(
                    name=name, lower_case=student_tokenizer.lower_case(name),
                    languages=teacher_languages[name],
                    examples=student_tokenizer.teacher_examples(name),
                    vocab_sha256=described[name]["teacher_vocab_sha256"])
                    for name in teachers},
                language_models=bool(model_folders))))
        if os.path.isdir(output_dir):
            shutil.rmtree(output_dir)
        os.replace(staging, output_dir)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)
    return dict(output_dir=output_dir, languages=folders, language_models=model_folders,
                default_teacher=root_teacher, step=step)


# ----------------------------------------------------------------------------------------------
# Command line.

def _define_flags() -> None:
    """The command's flags (defined only when run as a command, so that importing this module
    next to other CLIs defines no flags)."""
    flags.DEFINE_string("export_dir", None, "The student export (model_dir/export of "
                        "student/train.py, with tokenizer/).")
    flags.DEFINE_string("output_dir", None, "The Hugging Face folder to write.")
    flags.DEFINE_bool("overwrite", False, "Replace an existing previous export at --output_dir.")
    flags.DEFINE_bool("language_models", True, "Also write languages/<lang>/: per language, the "
                      "model with its output restricted to the tokens the language's tokenizer "
                      "can produce, for pipeline('fill-mask') (one weights file per teacher).")
    flags.mark_flags_as_required(["export_dir", "output_dir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        summary = export_hf(FLAGS.export_dir, FLAGS.output_dir, FLAGS.overwrite,
                            FLAGS.language_models)
    except ExportHFError as error:
        sys.exit(f"error: {error}")
    print(f"wrote {summary['output_dir']}")
    for language, folder in summary["languages"].items():
        model = summary["language_models"].get(language)
        print(f"  {language}: {os.path.join(summary['output_dir'], folder)}" + (
            f"  (fill-mask model: {os.path.join(summary['output_dir'], model)})" if model
            else ""))
    print(f"  default tokenizer (folder root): teacher {summary['default_teacher']}")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
