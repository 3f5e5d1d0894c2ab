"""TeacherModelHandler on a real tiny teacher: static padded batches, failures isolated."""

import dataclasses

import numpy as np
import pytest

from beam_jobs.teacher_model_handler import ScoringFailure, TeacherModelHandler, TeacherScores
from teacher_scoring.records import record_schema
from tests.beam_jobs.conftest import K, P, S
from tests.conftest import demo_lines

B = 4


def _examples(tokenizer, n, language="en"):
    out = []
    for i, text in enumerate(demo_lines(language, n)):
        ids = tokenizer.tokenize([text])[0][:S - 2]
        row = np.zeros(S, np.int32)
        row[:len(ids) + 2] = [tokenizer.cls_id] + ids + [tokenizer.sep_id]
        mask = (np.arange(S) < len(ids) + 2).astype(np.int32)
        positions = np.zeros(P, np.int32)
        gold = np.zeros(P, np.int32)
        weights = np.zeros(P, np.float32)
        chosen = np.arange(1, min(len(ids), 3) + 1)
        positions[:len(chosen)] = chosen
        gold[:len(chosen)] = row[chosen]
        weights[:len(chosen)] = 1
        row[chosen] = tokenizer.mask_id
        out.append(record_schema.ScoredExample(
            input_word_ids=row, input_mask=mask, input_type_ids=np.zeros(S, np.int32),
            masked_lm_positions=positions, masked_lm_ids=gold, masked_lm_weights=weights,
            language=language, teacher="en_a", example_id=f"{language}-x-{i}"))
    return out


@pytest.fixture(scope="module")
def handler_and_model(workspace):
    path, fmt, langs, _, _ = workspace.teachers["en_a"]
    handler = TeacherModelHandler("en_a", str(path), fmt, langs, S, P, K, batch_size=B)
    return handler, handler.load_model()


def test_batching_kwargs_are_the_static_batch(handler_and_model):
    handler, _ = handler_and_model
    assert handler.batch_elements_kwargs() == {"min_batch_size": B, "max_batch_size": B}


def test_results_do_not_depend_on_the_batch(handler_and_model):
    handler, model = handler_and_model
    examples = _examples(model.teacher.tokenizer(), 7)
    full = list(handler.run_inference(examples[:B], model))
    partial = list(handler.run_inference(examples[2:5], model))   # 3 rows, padded to B
    for a, b in zip(full[2:4], partial[:2]):
        assert isinstance(a.inference, TeacherScores)
        np.testing.assert_array_equal(a.inference.topk_ids, b.inference.topk_ids)
        np.testing.assert_array_equal(a.inference.topk_logits, b.inference.topk_logits)
        assert a.inference.teacher_loss == b.inference.teacher_loss
    scores = full[0].inference
    assert scores.topk_ids.shape == (P, K) and scores.topk_logits.shape == (P, K)
    real = examples[0].masked_lm_weights > 0
    assert np.all(scores.topk_ids[~real] == 0) and np.all(scores.topk_logits[~real] == 0)
    assert np.all(np.diff(scores.topk_logits[real], axis=1) <= 0)   # best first
    assert np.isfinite(scores.teacher_loss) and scores.teacher_loss > 0
    # The same numbers as the bare scoring function on that batch.
    batch = {f: np.stack([np.asarray(getattr(e, f)) for e in examples[:B]])
             for f in ("input_word_ids", "input_mask", "input_type_ids", "masked_lm_positions",
                       "masked_lm_ids", "masked_lm_weights")}
    direct = model.score_fn(batch)
    np.testing.assert_array_equal(direct["topk_ids"].numpy()[0], scores.topk_ids)


def test_bad_copies_fail_alone(handler_and_model):
    handler, model = handler_and_model
    examples = _examples(model.teacher.tokenizer(), 4)
    examples[1].input_word_ids[1] = 10 ** 6                      # outside the vocabulary
    examples[2].masked_lm_weights[:] = 0                         # nothing masked
    results = list(handler.run_inference(examples, model))
    assert isinstance(results[0].inference, TeacherScores)
    assert isinstance(results[3].inference, TeacherScores)
    assert "outside the teacher vocabulary" in results[1].inference.reason
    assert "no masked slot" in results[2].inference.reason
    assert [r.example.example_id for r in results] == [e.example_id for e in examples]


def test_a_failing_batch_is_retried_copy_by_copy(handler_and_model, monkeypatch):
    handler, model = handler_and_model
    examples = _examples(model.teacher.tokenizer(), 3)
    poison = examples[1].example_id
    real_score = handler._score

    def flaky(batch, loaded):
        if any(e.example_id == poison for e in batch):
            raise RuntimeError("injected failure")
        return real_score(batch, loaded)

    monkeypatch.setattr(handler, "_score", flaky)
    results = list(handler.run_inference(examples, model))
    assert isinstance(results[0].inference, TeacherScores)
    assert isinstance(results[2].inference, TeacherScores)
    assert results[1].inference == ScoringFailure("RuntimeError: injected failure")


def _faulty_teacher(vocab):
    """A Teacher (any callable) whose logits depend on a marker in input_type_ids[:, -1]:
    0 normal, 1 NaN everywhere, 2 logits of +-1e5 and 2e5 (beyond float16's 65504)."""
    import tensorflow as tf

    from teacher_scoring.teachers.teacher import Teacher

    def mlm_fn(input_word_ids, input_mask, input_type_ids, masked_lm_positions):
        del input_mask
        gathered = tf.gather(input_word_ids, masked_lm_positions, batch_dims=1)   # [B, P]
        logits = 3.0 * tf.one_hot(gathered, len(vocab)) - 1.0                     # [B, P, V]
        scale = tf.gather(tf.constant([1.0, float("nan"), 1e5]), input_type_ids[:, -1])
        return logits * scale[:, None, None]

    return Teacher("faulty", vocab, False, ["en"], mlm_fn)


@pytest.mark.parametrize("logits_dtype", ["float16", "float32"])
def test_nan_and_overflowing_logits_become_failures_with_their_reason(workspace, logits_dtype):
    from beam_jobs.teacher_model_handler import LoadedTeacher
    from teacher_scoring.teachers import scoring
    _, _, _, vocab, _ = workspace.teachers["en_a"]
    teacher = _faulty_teacher(vocab)
    loaded = LoadedTeacher(teacher, scoring.make_score_fn(teacher, top_k=K))
    handler = TeacherModelHandler("faulty", "unused", "auto", ["en"], S, P, K, batch_size=B,
                                  logits_dtype=logits_dtype)
    examples = _examples(teacher.tokenizer(), 3)
    examples[1].input_type_ids[-1] = 1
    examples[2].input_type_ids[-1] = 2
    results = [r.inference for r in handler.run_inference(examples, loaded)]
    assert isinstance(results[0], TeacherScores)
    assert isinstance(results[1], ScoringFailure)
    assert results[1].reason.startswith("non-finite teacher logits: ")
    if logits_dtype == "float16":
        assert isinstance(results[2], ScoringFailure)
        assert "teacher logit 200000 overflows float16" in results[2].reason
    else:
        assert isinstance(results[2], TeacherScores)
        assert results[2].topk_logits.max() == pytest.approx(2e5)


def test_one_trace_whatever_the_batch_sizes_and_padding_never_yields_records(workspace):
    """Every call is padded to the static [B, S]: one trace (one XLA compilation) per loaded
    teacher, however RunInference cuts the copies; padding rows never come back."""
    from teacher_scoring.teachers import scoring
    path, fmt, langs, _, _ = workspace.teachers["en_a"]
    handler = TeacherModelHandler("en_a", str(path), fmt, langs, S, P, K, batch_size=B,
                                  jit_compile=True)
    model = handler.load_model()
    examples = _examples(model.teacher.tokenizer(), 2 * B + 3)
    before = scoring.traces("en_a")
    for n in (1, 2, B - 1, B, B + 1, 2 * B + 3):   # last batches of a bundle, and several chunks
        results = list(handler.run_inference(examples[:n], model))
        assert [r.example.example_id for r in results] == [e.example_id for e in examples[:n]]
        assert all(isinstance(r.inference, TeacherScores) for r in results)
    # A batch that fails is retried copy by copy, each padded to B: still the same shape.
    broken = list(examples[:3])
    broken[1] = dataclasses.replace(broken[1], masked_lm_positions=np.zeros(P + 1, np.int32))
    results = list(handler.run_inference(broken, model))
    assert len(results) == 3 and isinstance(results[1].inference, ScoringFailure)
    assert model.score_fn.experimental_get_tracing_count() == 1
    assert scoring.traces("en_a") - before == 1


def test_bfloat16_handler_scores_with_a_bfloat16_encoder(handler_and_model, workspace,
                                                         monkeypatch):
    """The handler passes compute_dtype to the scoring function (its closeness to float32 is
    tested on a well-conditioned teacher in test_scoring_compute_dtype.py; this random teacher,
    initializer_range 1.0, amplifies bfloat16's rounding)."""
    handler, model = handler_and_model
    path, fmt, langs, _, _ = workspace.teachers["en_a"]
    bf16_handler = TeacherModelHandler("en_a", str(path), fmt, langs, S, P, K, batch_size=B,
                                       compute_dtype="bfloat16")
    from teacher_scoring.teachers import scoring
    rebuilt = []
    real_rebuild = scoring.bfloat16_teacher
    monkeypatch.setattr(scoring, "bfloat16_teacher",
                        lambda teacher: rebuilt.append(real_rebuild(teacher)) or rebuilt[-1])
    bf16_model = bf16_handler.load_model()
    assert len(rebuilt) == 1
    encoder, _ = rebuilt[0].model
    assert encoder.compute_dtype == "bfloat16"
    assert model.teacher.model.encoder_network.compute_dtype == "float32"
    examples = _examples(model.teacher.tokenizer(), B)
    f32 = [r.inference for r in handler.run_inference(examples, model)]
    bf16 = [r.inference for r in bf16_handler.run_inference(examples, bf16_model)]
    for a, b, e in zip(f32, bf16, examples):
        real = e.masked_lm_weights > 0
        assert isinstance(b, TeacherScores)
        assert np.all(np.isfinite(b.topk_logits)) and np.isfinite(b.teacher_loss)
        assert not np.array_equal(a.topk_logits[real], b.topk_logits[real])
        assert np.all(b.topk_ids[~real] == 0) and np.all(b.topk_logits[~real] == 0)


@pytest.mark.parametrize("bad", ["float16", "BF16", None])
def test_handler_refuses_an_unknown_compute_dtype(bad):
    with pytest.raises(ValueError, match=r"compute_dtype must be one of \['float32', "
                                         r"'bfloat16'\], got " + repr(bad)):
        TeacherModelHandler("t", "unused", "auto", ["en"], S, P, K, batch_size=B,
                            compute_dtype=bad)


def test_load_model_reuses_what_the_process_holds_and_keeps_nothing_itself(workspace,
                                                                          monkeypatch):
    """In the launcher's process (in_memory) the worker gets the teacher and scoring function
    the launcher holds (beam_jobs.loaded_teachers); elsewhere it builds its own, not held."""
    from beam_jobs import loaded_teachers
    from teacher_scoring.teachers import loaders
    path, fmt, langs, _, _ = workspace.teachers["en_a"]
    handler = TeacherModelHandler("en_a", str(path), fmt, list(langs), S, P, K, batch_size=B,
                                  jit_compile=True)
    key = handler.scoring_key
    assert key == loaded_teachers.ScoringKey(
        loaded_teachers.TeacherKey(str(path), fmt, "en_a", tuple(langs)), K, True, "float32")
    real_load = loaders.load_teacher
    loads = []
    monkeypatch.setattr(loaders, "load_teacher",
                        lambda *a, **kw: loads.append(kw["name"]) or real_load(*a, **kw))

    own = handler.load_model()                       # nothing held: builds, keeps nothing
    assert loads == ["en_a"] and not loaded_teachers.held(key.teacher)
    teacher, score_fn = loaded_teachers.get(key)     # what the launcher's check holds
    assert loads == ["en_a", "en_a"] and own.score_fn is not score_fn
    reused = handler.load_model()
    assert loads == ["en_a", "en_a"]
    assert reused.teacher is teacher and reused.score_fn is score_fn
    # Another jit_compile, top_k or compute_dtype is another function (of the same teacher).
    other = TeacherModelHandler("en_a", str(path), fmt, list(langs), S, P, K, batch_size=B)
    plain = other.load_model()
    assert loads == ["en_a", "en_a"]
    assert plain.teacher is teacher and plain.score_fn is not score_fn
    loaded_teachers.release(key.teacher)
    assert not loaded_teachers.held(key) and not loaded_teachers.held(key.teacher)


def test_canonical_batches_are_cut_from_the_data_alone(handler_and_model):
    """`canonical_batches`: a group's copies are sorted by (example id, content) and cut into
    lists of B, whatever order they arrive in (a repeated copy included); the group is the
    writer's shard of the example id."""
    from beam_jobs.score import _CutBatchesFn, canonical_group
    from teacher_scoring.examples.create_examples import shard_index
    handler, model = handler_and_model
    examples = _examples(model.teacher.tokenizer(), 10)
    examples.append(dataclasses.replace(examples[3]))              # a repeated document
    # Same id, other content: ordered by content, not by arrival.
    other = dataclasses.replace(examples[5], input_type_ids=np.ones(S, np.int32))
    examples.append(other)
    cut = _CutBatchesFn(handler.batch_size)
    batches = []
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(len(examples))
        got = list(cut.process((("en", 0), [examples[i] for i in order])))
        batches.append([[(e.example_id, e.input_type_ids.tobytes()) for e in b] for b in got])
    assert batches[0] == batches[1] == batches[2]
    assert [len(b) for b in batches[0]] == [B, B, len(examples) - 2 * B]
    flat = [key for batch in batches[0] for key in batch]
    assert [k[0] for k in flat] == sorted(e.example_id for e in examples)
    for e in examples:
        assert canonical_group(e, {"en": 3}) == ("en", shard_index(e.example_id, 3))


def test_score_with_teachers_in_canonical_batches(handler_and_model, workspace):
    """ScoreWithTeachers with canonical batches scores every copy once, in the batches the
    data gives (the handler's own results on those batches), and counts them."""
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.testing.util import assert_that, equal_to

    from beam_jobs import metrics
    from beam_jobs.score import SCORED, ScoreWithTeachers, _CutBatchesFn, canonical_group
    handler, model = handler_and_model
    examples = _examples(model.teacher.tokenizer(), 9)
    for e in examples:
        e.num_masked_words = e.num_predictions
    shards = {"en": 2}
    expected = {}
    for group in sorted({canonical_group(e, shards) for e in examples}):
        mine = [e for e in examples if canonical_group(e, shards) == group]
        for batch in _CutBatchesFn(B).process((group, mine)):
            for r in handler.run_inference(batch, model):
                expected[r.example.example_id] = (r.inference.topk_logits.tobytes(),
                                                  r.inference.teacher_loss)
    with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"])) as pipeline:
        scored = (pipeline | beam.Create(examples[::-1])
                  | ScoreWithTeachers({"en_a": handler}, canonical_batches=shards))
        got = scored[SCORED] | beam.Map(
            lambda e: (e.example_id, (e.teacher_topk_logits.tobytes(), e.teacher_loss)))
        assert_that(got, equal_to(list(expected.items())))
    result = pipeline.result
    counters = {c.key.metric.name: c.committed for c in result.metrics().query(
        MetricsFilter().with_namespace(metrics.NAMESPACE))["counters"]}
    groups = [sum(canonical_group(e, shards) == g for e in examples)
              for g in {canonical_group(e, shards) for e in examples}]
    assert counters["job/en_a/batches"] == sum(-(-n // B) for n in groups)
    assert counters["job/en_a/padded_rows"] == sum(-n % B for n in groups)
    assert counters["en/en_a/scored"] == len(examples)
