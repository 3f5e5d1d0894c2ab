"""Tests of teacher_scoring.examples.tokenization: clean_text, read_vocab, and TeacherTokenizer's parity
with Hugging Face's slow BertTokenizer (the reference) on the bundled text of all ten languages,
on every code point, and on edge cases; plus offsets and batching."""

import collections
import re
import sys
import unicodedata

import numpy as np
import pytest

from teacher_scoring.examples import tokenizer_parity
from teacher_scoring.examples.tokenization import (MAX_INPUT_CHARS_PER_WORD, SPECIAL_TOKENS,
                                          TeacherTokenizer, VocabError, clean_text, read_vocab)
from tests.conftest import DEMO_LANGUAGES, UDHR_LANGUAGES, demo_lines, trained_vocab, udhr_lines
from vocab.train_wordpiece import train_wordpiece


# Uncased trained vocabs are tested on these (bert-base-uncased and the multilingual uncased
# vocab cover every language): CJK, Devanagari, Arabic marks, German ß, Turkish dotted İ.
UNCASED_TRAINED_LANGUAGES = ("ar", "de", "hi", "tr", "zh")


def bundled_lines(language: str, demo_limit: int | None = None) -> list[str]:
    """The bundled paragraphs of a language: udhr (all 10), then demo (all but ar; the first
    `demo_limit` if given)."""
    demo = demo_lines(language, demo_limit) if language in DEMO_LANGUAGES else []
    return udhr_lines(language) + demo


def own_vocab(language: str, lower_case: bool) -> list[str]:
    """A WordPiece vocab trained on the language's bundled text (udhr only exists for ar)."""
    if language in DEMO_LANGUAGES:
        return trained_vocab(language, 3000, lower_case)
    return train_wordpiece(udhr_lines(language), 2000, lower_case)


@pytest.fixture(scope="module")
def vocab_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("vocabs")


@pytest.fixture(scope="module")
def bert_uncased():
    """(vocab file, TeacherTokenizer, HF slow) for the real bert-base-uncased vocab."""
    path = tokenizer_parity.bert_base_uncased_vocab_path()  # fails clearly if not installed
    return (path, TeacherTokenizer.from_vocab_file(path, lower_case=True),
            tokenizer_parity.hf_slow_tokenizer(path, lower_case=True))


def write(vocab_dir, name, tokens):
    return tokenizer_parity.write_vocab_file(tokens, str(vocab_dir / f"{name}.txt"))


def assert_same_ids(ours, reference, lines, vocab, what):
    bad = [i for i, (a, b) in enumerate(zip(ours, reference)) if a != b]
    assert len(ours) == len(reference) == len(lines)
    if bad:
        i = bad[0]
        pytest.fail(f"{what}: {len(bad)}/{len(lines)} paragraphs differ, first {lines[i]!r}:\n"
                    f"ours {[vocab[t] for t in ours[i]]}\nhf   {[vocab[t] for t in reference[i]]}")


# ---------------------------------------------------------------------------------------------
# read_vocab


def test_read_vocab_round_trip_and_errors(tmp_path):
    tokens = list(SPECIAL_TOKENS) + ["hello", "##lo", "é", "中"]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    assert read_vocab(str(path)) == tokens
    path.write_text("\r\n".join(tokens), encoding="utf-8")
    assert read_vocab(str(path)) == tokens

    cases = {
        "twice": (list(SPECIAL_TOKENS) + ["a", "a"], "appears twice"),
        "no_mask": ([t for t in SPECIAL_TOKENS if t != "[MASK]"], "[MASK]"),
    }
    for name, (content, message) in cases.items():
        bad = tmp_path / f"{name}.txt"
        bad.write_text("\n".join(content) + "\n", encoding="utf-8")
        with pytest.raises(VocabError, match=re.escape(message)):
            read_vocab(str(bad))
    latin1 = "\n".join(list(SPECIAL_TOKENS) + ["caf\xe9"]).encode("latin-1")
    (tmp_path / "latin1.txt").write_bytes(latin1)
    with pytest.raises(VocabError, match="not UTF-8"):
        read_vocab(str(tmp_path / "latin1.txt"))
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(VocabError, match="empty"):
        read_vocab(str(tmp_path / "empty.txt"))


def test_tokenizer_rejects_bad_vocab():
    with pytest.raises(VocabError, match=re.escape("no [UNK]")):
        TeacherTokenizer(["[PAD]", "[CLS]", "[SEP]", "[MASK]", "a"], lower_case=False)
    with pytest.raises(VocabError, match="twice"):
        TeacherTokenizer(list(SPECIAL_TOKENS) + ["a", "a"], lower_case=False)


# ---------------------------------------------------------------------------------------------
# clean_text


def test_clean_text_empty_input_counts_nothing():
    for raw in ("", b""):
        counts = collections.Counter()
        assert clean_text(raw, counts) == ""
        assert counts == {}


def test_clean_text_leaves_clean_text_alone():
    counts = collections.Counter()
    for text in ("Plain ASCII.", "Grüße, 你好, नमस्ते, مرحبا"):
        assert clean_text(text, counts) == text
        assert clean_text(text.encode("utf-8"), counts) == text
    assert counts == {}


def test_clean_text_invalid_utf8_dropped_and_counted():
    counts = collections.Counter()
    assert clean_text(b"caf\xc3\xa9 \xff\xfeok \xe4\xb8", counts) == "café ok "
    assert counts == {"invalid_utf8": 1}
    clean_text(b"\x80", counts)
    assert counts == {"invalid_utf8": 2}


def test_clean_text_control_characters_removed_and_counted_once_per_text():
    counts = collections.Counter()
    text = ("a\x00b\x01c\x7fd\x9fe\u200bf\u00adg\ufeffh\ue000i\u0378j\U0010fffek\ufffdl")
    assert clean_text(text, counts) == "abcdefghijkl"
    assert counts == {"control_characters": 1}
    assert clean_text("NUL\x00", counts) == "NUL"
    assert clean_text("replacement\ufffd char", counts) == "replacement char"
    assert clean_text("lone\udc80 surrogates\ud800", counts) == "lone surrogates"
    assert counts == {"control_characters": 4}


def test_clean_text_whitespace_becomes_space_uncounted():
    counts = collections.Counter()
    text = "a\tb\nc\rd\u00a0e\u3000f\u2028g\u2029h\u2003i  j"
    assert clean_text(text, counts) == "a b c d e f g h i  j"
    assert counts == {}


def test_clean_text_nfc_and_counts():
    counts = collections.Counter()
    assert clean_text("e\u0301cole", counts) == "\u00e9cole"
    assert clean_text("\u0915\u093c", counts) == "\u0915\u093c"  # क़ stays decomposed (exclusion)
    assert clean_text("\u0958", counts) == "\u0915\u093c"  # precomposed क़ is decomposed by NFC
    assert clean_text("\uf900", counts) == "\u8c48"  # CJK compatibility ideograph
    assert counts == {"nfc_normalized": 3}
    # A mark separated from its letter by a removed control character composes with it.
    assert clean_text("e\u200b\u0301", counts) == "\u00e9"
    assert counts == {"nfc_normalized": 4, "control_characters": 1}


def test_clean_text_rejects_other_types():
    with pytest.raises(TypeError, match="str or bytes"):
        clean_text(42)


def test_clean_text_equals_hf_clean_up_and_nfc_on_every_code_point(bert_uncased):
    """HF's _clean_text + NFC (+ U+2028/9 as spaces, which str.split treats as whitespace)."""
    basic = bert_uncased[2].basic_tokenizer
    every = "".join(chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF)
    for start in range(0, len(every), 50_000):
        chunk = "x" + every[start:start + 50_000]  # leading x: no chunk starts with a mark
        expected = unicodedata.normalize("NFC", basic._clean_text(chunk))
        expected = expected.replace("\u2028", " ").replace("\u2029", " ")
        assert clean_text(chunk) == expected


# ---------------------------------------------------------------------------------------------
# Parity with Hugging Face on the bundled text


@pytest.mark.parametrize("language", UDHR_LANGUAGES)
def test_parity_bert_base_uncased(bert_uncased, language):
    _, ours, slow = bert_uncased
    lines = bundled_lines(language)
    assert_same_ids(ours.tokenize(lines), tokenizer_parity.hf_slow_ids(slow, lines), lines,
                    ours.vocab, f"bert-base-uncased on {language}")


@pytest.mark.parametrize("language,lower_case",
                         [(language, False) for language in UDHR_LANGUAGES]
                         + [(language, True) for language in UNCASED_TRAINED_LANGUAGES],
                         ids=[f"{language}-cased" for language in UDHR_LANGUAGES]
                         + [f"{language}-uncased" for language in UNCASED_TRAINED_LANGUAGES])
def test_parity_own_trained_vocab(vocab_dir, language, lower_case):
    tokens = own_vocab(language, lower_case)
    path = write(vocab_dir, f"{language}-{lower_case}", tokens)
    ours = TeacherTokenizer(tokens, lower_case)
    lines = bundled_lines(language)
    slow = tokenizer_parity.hf_slow_tokenizer(path, lower_case)
    assert_same_ids(ours.tokenize(lines), tokenizer_parity.hf_slow_ids(slow, lines), lines,
                    tokens, f"{language} vocab, lower_case={lower_case}")


@pytest.mark.parametrize("lower_case", [False, True], ids=["cased", "uncased"])
def test_parity_multilingual_vocab_all_text_and_fast_tokenizer(vocab_dir, lower_case):
    """One vocab trained on all ten languages, on all bundled text. HF's BertTokenizerFast
    agrees too, except on text that is not NFC (it skips the slow tokenizer's NFC step)."""
    everything = [line for language in UDHR_LANGUAGES for line in udhr_lines(language)
                  + (demo_lines(language, limit=400) if language in DEMO_LANGUAGES else [])]
    tokens = train_wordpiece(everything, 12000, lower_case)
    path = write(vocab_dir, f"multi-{lower_case}", tokens)
    ours = TeacherTokenizer(tokens, lower_case).tokenize(everything)
    slow = tokenizer_parity.hf_slow_ids(tokenizer_parity.hf_slow_tokenizer(path, lower_case),
                                        everything)
    assert_same_ids(ours, slow, everything, tokens, f"multilingual, lower_case={lower_case}")
    fast = tokenizer_parity.hf_fast_ids(tokenizer_parity.hf_fast_tokenizer(path, lower_case),
                                        everything)
    nfc = [unicodedata.is_normalized("NFC", line) for line in everything]
    assert_same_ids([a for a, n in zip(ours, nfc) if n], [b for b, n in zip(fast, nfc) if n],
                    [x for x, n in zip(everything, nfc) if n], tokens, "fast on NFC text")
    fast_differs = sum(a != b for a, b, n in zip(ours, fast, nfc) if not n)
    if lower_case:  # NFD + accent stripping make NFC irrelevant
        assert fast_differs == 0
    else:  # udhr/hi.txt has decomposed nukta letters (e.g. ज़ as ज + ़) that NFC composes
        assert fast_differs > 0


# ---------------------------------------------------------------------------------------------
# Parity on every code point and on edge cases


@pytest.mark.parametrize("lower_case", [False, True], ids=["cased", "uncased"])
def test_parity_every_code_point(vocab_dir, lower_case):
    """Whitespace, control, punctuation, CJK and case/accent handling of each character."""
    _assert_character_vocab_parity(vocab_dir, "every code point",
                                   tokenizer_parity.code_point_probe_texts(astral_step=61),
                                   lower_case)


def _assert_character_vocab_parity(vocab_dir, what, lines, lower_case):
    """Ours equals HF's slow tokenizer on `lines`, over a vocab of their characters."""
    tokens = tokenizer_parity.char_vocab(lines)
    path = write(vocab_dir, f"{what.replace(' ', '_')}-{lower_case}", tokens)
    ours = TeacherTokenizer(tokens, lower_case).tokenize(lines)
    slow = tokenizer_parity.hf_slow_ids(tokenizer_parity.hf_slow_tokenizer(path, lower_case),
                                        lines)
    assert_same_ids(ours, slow, lines, tokens, f"{what}, lower_case={lower_case}")


EDGE_CASES = [
    "Straße STRASSE ß ẞ",  # NFKC case folding would give 'ss'
    "… ﬁnance ｆｕｌｌｗｉｄｔｈ x² ½ ℃ Ⅻ ㎏ ™",  # compatibility characters are kept
    "ΟΔΟΣ ΟΔΟΣ. Σ ΑΣ-Β ὈΔΥΣΣΕΎΣ",  # Greek final sigma (context-dependent lower-casing)
    "İstanbul IŞIK ışık ǅemal ǈ ǋ",  # multi-character lower case, title-case digraphs
    "e\u0301cole Ame\u0301lie q\u0303 a\u0308\u0304",  # decomposed accents, no precomposed form
    "\u0958\u0959 \u095e \u0915\u093c भारत के लिए",  # Devanagari nukta (composition exclusions)
    "العَرَبِيَّة مُحَمَّد ٱلۡأَرۡضِ ـٰ",  # Arabic harakat (Mn) and Quranic marks
    "\uf900\uf901 \U0002f800 漢字 中文 日本語 한국어 カタカナ",  # CJK incl. compatibility ideographs
    "a\u200bb c\u00add e\ufeff f\u200dg h\x00i j\x7fk l\ufffdm n\ue000o",  # removed characters
    "a\u00a0b c\u3000d e\u2028f g\u2029h i\tj\nk",  # whitespace
    "$5 ^caret^ `tick` ¿qué? «guillemets» „Zitat“ – — · § ¶ © ° ± × ÷ € £ ¥ ₹ ‰ † •",
    "emoji 😀👍🏽 🇩🇪 ✓ ★ ♥ math ∑∫√∞ ≠ ≤ ≥",
    "x" * MAX_INPUT_CHARS_PER_WORD + " " + "y" * (MAX_INPUT_CHARS_PER_WORD + 1),  # 100 ok; 101
    "é" * 60 + " " + "क" * 40,  # < 100 chars but > 100 bytes: not [UNK]
    "É" * 101 + " " + "é" * 50 + "." + "é" * 60,  # 101 chars → [UNK]; punctuation splits words
    "ǆ" * 60 + " ǅ ǈ",  # compatibility digraphs: kept (NFKC would give 'dz')
    "한국어 대한민국",  # uncased: NFD gives jamo (3 a syllable)
    "\u0947\u0947 leading marks \u0301x",
    "",
    "   ",
]


@pytest.mark.parametrize("lower_case", [False, True], ids=["cased", "uncased"])
def test_parity_edge_cases(vocab_dir, lower_case):
    _assert_character_vocab_parity(vocab_dir, "edge cases", EDGE_CASES, lower_case)


def test_parity_edge_cases_bert_base_uncased(bert_uncased):
    _, ours, slow = bert_uncased
    assert_same_ids(ours.tokenize(EDGE_CASES), tokenizer_parity.hf_slow_ids(slow, EDGE_CASES),
                    EDGE_CASES, ours.vocab, "edge cases, bert-base-uncased")


def test_long_words_are_one_unk(bert_uncased):
    _, ours, _ = bert_uncased
    unk = ours.unk_id
    ids = ours.tokenize(["a" * 100, "a" * 101, "é" * 101, "ab " + "é" * 101 + " cd"])
    assert unk not in ids[0]
    assert ids[1] == [unk] and ids[2] == [unk]
    assert ids[3] == ours.tokenize(["ab"])[0] + [unk] + ours.tokenize(["cd"])[0]
    text = clean_text("ab " + "é" * 101 + " cd")
    tokenized = ours.tokenize_with_offsets([text])[0]
    k = list(tokenized.ids).index(unk)
    assert (tokenized.starts[k], tokenized.ends[k]) == (3, 3 + 2 * 101)  # the whole word


def test_literal_special_tokens_are_text(bert_uncased):
    """Pinned difference: HF's default `tokenize` keeps a whitespace-delimited "[MASK]" as the
    special token; here (like Google's BERT pre-processing and HF with split_special_tokens)
    it is text."""
    path, ours, slow = bert_uncased
    text = ["fill [MASK] and [SEP] here"]
    ids = ours.tokenize(text)
    assert ours.mask_id not in ids[0] and ours.sep_id not in ids[0]
    assert ids == tokenizer_parity.hf_slow_ids(slow, text)
    fast = tokenizer_parity.hf_fast_tokenizer(path, lower_case=True)
    assert ids == tokenizer_parity.hf_fast_ids(fast, text)
    default = tokenizer_parity.hf_slow_ids(slow, text, match_special_tokens=True)
    assert ours.mask_id in default[0] and ids != default


def test_unproducible_vocab_entries_do_not_match(vocab_dir):
    """Entries with whitespace/control characters, empty, or a bare '##' never occur in HF's
    output; tf-text must not match them either (it would match 'a b' across the space)."""
    tokens = list(SPECIAL_TOKENS) + ["a", "b", "##b", "a b", "", "##", "a\tb", "##\u200b", "c"]
    path = write(vocab_dir, "odd", tokens)
    lines = ["a b", "a  b c", "ab", "a\tb", "a##b", "c\u200b"]
    for lower_case in (False, True):
        ours = TeacherTokenizer(tokens, lower_case).tokenize(lines)
        slow = tokenizer_parity.hf_slow_ids(tokenizer_parity.hf_slow_tokenizer(path, lower_case),
                                            lines)
        assert_same_ids(ours, slow, lines, tokens, f"odd vocab, lower_case={lower_case}")
    assert ours[0] == [5, 6]


# ---------------------------------------------------------------------------------------------
# Offsets, batching, API


def _check_offsets(cleaned, tokenized):
    data = cleaned.encode("utf-8")
    assert tokenized.ids.dtype == np.int32
    assert len(tokenized.starts) == len(tokenized.ends) == len(tokenized.ids)
    assert np.all(tokenized.starts >= 0) and np.all(tokenized.ends <= len(data))
    assert np.all(tokenized.starts < tokenized.ends)
    assert np.all(np.diff(tokenized.starts) >= 0) and np.all(np.diff(tokenized.ends) >= 0)
    for s, e in zip(tokenized.starts, tokenized.ends):
        data[s:e].decode("utf-8")  # character boundaries


def _words(tokenizer, tokenized):
    """[(start, end)] of each word: a non-## piece and the ## pieces after it."""
    words = []
    for i, s, e in zip(tokenized.ids, tokenized.starts, tokenized.ends):
        if tokenizer.is_continuation(int(i)):
            words[-1] = (words[-1][0], e)
        else:
            words.append((s, e))
    return words


@pytest.mark.parametrize("language", UDHR_LANGUAGES)
def test_offsets_cased_are_surfaces_and_word_boundaries(vocab_dir, language):
    """Cased: each piece's bytes are its surface; each word's bytes are HF's word."""
    tokens = own_vocab(language, lower_case=False)
    tokenizer = TeacherTokenizer(tokens, lower_case=False)
    path = write(vocab_dir, f"{language}-offsets", tokens)
    hf_basic = tokenizer_parity.hf_slow_tokenizer(path, lower_case=False).basic_tokenizer
    cleaned = [clean_text(line) for line in bundled_lines(language, demo_limit=800)]
    for text, tokenized in zip(cleaned, tokenizer.tokenize_with_offsets(cleaned)):
        _check_offsets(text, tokenized)
        data = text.encode("utf-8")
        for i, s, e in zip(tokenized.ids, tokenized.starts, tokenized.ends):
            if i != tokenizer.unk_id:
                assert data[s:e].decode("utf-8") == tokens[i].removeprefix("##")
        words = [data[s:e].decode("utf-8") for s, e in _words(tokenizer, tokenized)]
        assert words == hf_basic.tokenize(text)


@pytest.mark.parametrize("language", UDHR_LANGUAGES)
def test_offsets_uncased_normalise_to_surfaces(bert_uncased, language):
    """Uncased: each piece's bytes, lower-cased and accent-stripped, are its surface (no
    character of the bundled text normalises to several); words are HF's words."""
    _, tokenizer, slow = bert_uncased
    cleaned = [clean_text(line) for line in bundled_lines(language, demo_limit=800)]
    for text, tokenized in zip(cleaned, tokenizer.tokenize_with_offsets(cleaned)):
        _check_offsets(text, tokenized)
        data = text.encode("utf-8")
        for i, s, e in zip(tokenized.ids, tokenized.starts, tokenized.ends):
            if i != tokenizer.unk_id:
                surface = tokenizer.normalize([data[s:e].decode("utf-8")])[0]
                assert surface == tokenizer.vocab[i].removeprefix("##")
        words = [tokenizer.normalize([data[s:e].decode("utf-8")])[0]
                 for s, e in _words(tokenizer, tokenized)]
        assert words == slow.basic_tokenizer.tokenize(text)


def test_offsets_uncased_expansions_and_dropped_marks(bert_uncased):
    """Dropped marks stay with the preceding piece; a character that normalises to several
    pieces' characters is covered by each of them."""
    # NFD splits a Hangul syllable into its three jamo; HF matches those in an uncased vocab.
    tokens = list(SPECIAL_TOKENS) + ["\u0915", "##\u0915", "\u1112", "##\u1161", "##\u11ab", "a",
                                     "##b", "x"]
    tokenizer = TeacherTokenizer(tokens, lower_case=True)
    text = clean_text("\u0915\u0947\u0947 \ud55c \u0301x Ab\u0301")
    tokenized = tokenizer.tokenize_with_offsets([text])[0]
    _check_offsets(text, tokenized)
    data = text.encode("utf-8")
    spans = [data[s:e].decode("utf-8") for s, e in zip(tokenized.starts, tokenized.ends)]
    assert [tokens[i] for i in tokenized.ids] == ["\u0915", "\u1112", "##\u1161", "##\u11ab", "x",
                                                  "a", "##b"]
    assert spans == ["\u0915\u0947\u0947", "\ud55c", "\ud55c", "\ud55c", "x", "A", "b\u0301"]


@pytest.mark.parametrize("lower_case", [False, True], ids=["cased", "uncased"])
def test_batch_equals_one_by_one(lower_case):
    """Batching (one tf-text call, offsets mapped on the concatenation) changes nothing, also
    for empty texts and texts starting or ending with dropped marks."""
    tokenizer = TeacherTokenizer(tokenizer_parity.char_vocab(EDGE_CASES), lower_case)
    texts = [clean_text(t) for t in EDGE_CASES + ["\u0301", "a\u0301", "\u0301a", "", "\u00c9COLE"]]
    batch = tokenizer.tokenize_with_offsets(texts)
    assert len(batch) == len(texts)
    for text, together in zip(texts, batch):
        alone = tokenizer.tokenize_with_offsets([text])[0]
        _check_offsets(text, together)
        for field in ("ids", "starts", "ends"):
            np.testing.assert_array_equal(getattr(together, field), getattr(alone, field))
    assert tokenizer.tokenize_with_offsets([]) == []


def test_tokenize_accepts_bytes_and_cleans(bert_uncased):
    _, tokenizer, _ = bert_uncased
    assert tokenizer.tokenize([b"Hello\x00 W\xc3\xb6rld\xff", "Hello Wörld"]) == [
        tokenizer.tokenize(["hello world"])[0]] * 2


def test_special_ids_and_continuations(bert_uncased):
    _, tokenizer, _ = bert_uncased
    vocab = tokenizer.vocab
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.cls_id, tokenizer.sep_id,
            tokenizer.mask_id) == (0, 100, 101, 102, 103)
    assert {0, 100, 101, 102, 103} <= tokenizer.special_ids
    assert all(vocab[i].startswith("[") for i in tokenizer.special_ids)
    assert tokenizer.vocab_size == len(vocab) == 30522
    ids = tokenizer.tokenize(["unaffable tokenization"])[0]
    assert [tokenizer.is_continuation(i) for i in ids] == [vocab[i].startswith("##")
                                                           for i in ids]
    assert any(tokenizer.is_continuation(i) for i in ids)
