r"""Benchmark of the scoring job: throughput against the fastest bare scoring loop, and bytes on disk.

Measured side by side in one run on this machine:

  * job: the whole scoring job (`beam_jobs.pipeline.run_job`: teacher validation, pipeline
    construction, reading BERT-format documents, packing + masking, RunInference, vocab
    mapping, sorting and writing GZIP shards, manifests) in its default settings (the job
    config's defaults, e.g. `jit_compile`, and the launcher's DirectRunner defaults, unless the
    flags below say otherwise), in real tokens (sum of input_mask) and sequences per second;
  * bare: the same teacher's scoring function (`teacher_scoring.teachers.scoring.make_score_fn`) called
    in a Python loop on pre-built [batch, S] batches of exactly the job's packed sequences
    (tracing / compilation excluded), with XLA (`jit_compile=True`, measured before and after
    the job, to see the noise of a shared machine) and once without (the XLA speed-up);
  * ratio = job / fastest bare loop, in CPU time (target >= 0.9) and wall clock;
  * the job's CPU time by section (`CpuSections`: the own CPU time of each of its steps, the
    scoring function's first call apart, and what is left to Beam), by thread, its inference
    batches and padded rows against the bare loop's, and a digest of its shards
    (`--profile_job`: also a cProfile of it);
  * traces during the job: of the teachers' scoring functions (`scoring.traces`; under XLA each
    is a compilation) and of the tokenizers' tf-text graphs (`TeacherTokenizer._tokenize_graph`)
    — counted in this process, so with the default `in_memory` runner;
  * bfloat16 scoring (`compute_dtype: bfloat16`; `--bfloat16`, on by default): the bare XLA loop
    in bfloat16 beside the float32 one (speed, and whether this CPU has bfloat16 instructions:
    avx512_bf16 / amx_bf16 in /proc/cpuinfo), and its fidelity on the first `--fidelity_batches`
    batches: top-8 agreement with float32 (the same ids as a set, the same top-1), the error of
    the top-k logits and of the teacher loss, and the student's KD loss (`student.losses`, the
    trainer's own) on the records, with the float32 teacher's full logits as the student, against
    float32 and bfloat16 targets;
  * bytes on disk per masked position, float32 logits (the job's output) and float16 logits
    (the same records re-encoded with the float16 spec, exactly what the job writes with
    `logits_dtype: float16`), against dense full-vocabulary float32 storage (4 B x student
    vocab size per masked position). Targets: <= 64 B (float32), <= 48 B (float16).

The corpus is the bundled demo text of every language in BERT's format (`document_format:
blank_line`): a document is a run of `--paragraphs_per_document` consecutive paragraphs (the
demo text is LibreOffice help in its page order), a blank line between documents, `--passes`
times with different groupings (distinct documents). The job packs each document's
paragraphs into full sequences itself. The teacher is a random BERT (`--num_layers` 4,
`--hidden_size` 256) over a WordPiece vocab trained on that text. `--other_teacher_tokens` puts
that many tokens of other (vocabulary-only) teachers before it in the student vocab, so its
student ids are as large as in a real union (the paper's students have 99k and 181k tokens):
that is what varint ids cost.

    .venv/bin/python bench/bench_scoring.py                 # defaults: batch 64, S 128, 4 layers
    .venv/bin/python bench/bench_scoring.py --direct_running_mode=multi_processing \
        --direct_num_workers=2 --jit_compile=false
"""

from __future__ import annotations

import logging
import os
import pathlib
import shutil
import tempfile
import time

from absl import app, flags
import numpy as np

# bench/ is the script's folder, so on sys.path: the accounting lives in a module without flags.
from cpu_accounting import (CpuSections, cpu_seconds, shard_digest, thread_cpu_seconds,
                            thread_groups)

FLAGS = flags.FLAGS
REPO = pathlib.Path(__file__).resolve().parents[1]
LANGUAGES = ("de", "en", "es", "fi", "fr", "hi", "it", "tr", "zh")

flags.DEFINE_string("work_dir", None, "Scratch folder (default: a new temporary folder).")
flags.DEFINE_bool("keep", False, "Keep the scratch folder.")
flags.DEFINE_list("languages", list(LANGUAGES), "Demo corpora to score.")
flags.DEFINE_integer("paragraphs_per_document", 8, "Demo paragraphs a document (blank_line).")
flags.DEFINE_integer("passes", 1,
                     "Passes over the demo text, pass i grouping paragraphs_per_document + i "
                     "paragraphs a document (distinct documents; a longer job amortises the "
                     "fixed start-up cost as a Wikipedia-sized job does).")
flags.DEFINE_integer("vocab_size", 8000, "Teacher WordPiece vocab size.")
flags.DEFINE_integer("other_teacher_tokens", 150000,
                     "Tokens of other teachers before this one in the student vocab.")
flags.DEFINE_integer("num_layers", 4, "Teacher layers.")
flags.DEFINE_integer("hidden_size", 256, "Teacher hidden size (heads = hidden / 64).")
flags.DEFINE_integer("seq_length", 128, "S.")
flags.DEFINE_integer("max_predictions_per_seq", 20, "P.")
flags.DEFINE_integer("top_k", 8, "k.")
flags.DEFINE_integer("batch_size", 64, "Inference batch size (job and bare loop).")
flags.DEFINE_string("direct_running_mode", None,
                    "DirectRunner mode: in_memory | multi_threading | multi_processing "
                    "(default: the launcher's).")
flags.DEFINE_integer("direct_num_workers", None, "DirectRunner workers (default: the "
                     "launcher's).")
flags.DEFINE_bool("jit_compile", None, "The job config's jit_compile (default: the job "
                  "config's default).")
flags.DEFINE_enum("compute_dtype", None, ["float32", "bfloat16"],
                  "The job config's compute_dtype (default: the job config's default).")
flags.DEFINE_bool("bfloat16", True, "Measure bfloat16 scoring (speed and fidelity) against "
                  "float32 in bare loops.")
flags.DEFINE_integer("fidelity_batches", 20, "Batches of the bfloat16 fidelity comparison.")
flags.DEFINE_string("fidelity_teacher", None,
                    "Also measure bfloat16 fidelity on this (trained) teacher folder, on the "
                    "demo text of its languages masked as the job does (S = its "
                    "max_sequence_length if shorter than --seq_length). The bench's own teacher "
                    "is random (initializer_range 0.5), which amplifies rounding.")
flags.DEFINE_bool("bare_plain", True, "Also time the bare loop without XLA.")
flags.DEFINE_bool("job_before", False,
                  "Also run the job as it was before tokenizers were shared by the languages of "
                  "a process (each language's DoFn builds and traces its own), after the job.")
flags.DEFINE_string("profile_job", None,
                    "Run the job under cProfile (in this process: the in_memory runner's "
                    "workers included; it slows Python code, so the job's timings of that run "
                    "are not comparable) and write the pstats file here; prints the top "
                    "entries by own time and by cumulative time.")
flags.DEFINE_integer("profile_top", 40, "Entries printed of --profile_job's profile.")
flags.DEFINE_bool("bare_before", True, "Also time the XLA bare loop before the job (the mean "
                  "of before and after evens out the machine's load; off halves that cost).")


def build_workspace(root: pathlib.Path):
    """Corpora, teacher (HF folder), student vocab; returns (teacher path, vocab, corpora)."""
    from teacher_scoring.teachers import export
    from teacher_scoring.teachers.loaders import bert_mlm
    from vocab.train_wordpiece import train_wordpiece
    from vocab.union import StudentVocab
    import tensorflow as tf

    corpora = {}
    all_lines = []
    for language in FLAGS.languages:
        lines = [line for line in (REPO / "data/corpora/demo" / f"{language}.txt").read_text(
            encoding="utf-8").split("\n") if line.strip()]
        all_lines += lines
        documents = []
        for p in range(FLAGS.passes):
            k = FLAGS.paragraphs_per_document + p
            documents += ["\n".join(lines[i:i + k]) for i in range(0, len(lines), k)]
        path = root / "corpora" / f"{language}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n\n".join(documents) + "\n", encoding="utf-8")
        corpora[language] = path
    vocab = train_wordpiece(all_lines, FLAGS.vocab_size, lower_case=False)
    tf.keras.utils.set_random_seed(0)
    config = bert_mlm.BertMLMConfig(
        vocab_size=len(vocab), hidden_size=FLAGS.hidden_size, num_layers=FLAGS.num_layers,
        num_attention_heads=max(1, FLAGS.hidden_size // 64),
        intermediate_size=4 * FLAGS.hidden_size, max_position_embeddings=FLAGS.seq_length,
        initializer_range=0.5)
    model = bert_mlm.build_bert_mlm(config)
    teacher_path = root / "teachers" / "bench"
    export.export_hf_folder(model.encoder_network, model.masked_lm, vocab, str(teacher_path),
                            lower_case=False, languages=list(FLAGS.languages), name="bench")
    teachers = {}
    if FLAGS.other_teacher_tokens:
        teachers["others"] = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] +
                              [f"other_token_{i}" for i in range(FLAGS.other_teacher_tokens)])
    teachers["bench"] = vocab
    StudentVocab.build(teachers).save(str(root / "vocab"))
    return teacher_path, vocab, corpora


def job_config(root, teacher_path, corpora):
    from beam_jobs import job_config as jc
    data = {
        "student_vocab": str(root / "vocab"), "output_dir": str(root / "scored"),
        "seq_length": FLAGS.seq_length, "max_predictions_per_seq": FLAGS.max_predictions_per_seq,
        "top_k": FLAGS.top_k, "masked_lm_prob": 0.15, "whole_word_masking": True, "seed": 12345,
        "logits_dtype": "float32", "compression": "GZIP", "copies_mode": "best",
        "inference_batch_size": FLAGS.batch_size, "document_format": "blank_line",
        "languages": {lang: {"corpus": [str(p)], "num_shards": 2} for lang, p in corpora.items()},
        "teachers": {"bench": {"format": "hf_folder", "path": str(teacher_path),
                               "languages": list(corpora)}},
    }
    if FLAGS.jit_compile is not None:
        data["jit_compile"] = FLAGS.jit_compile
    if FLAGS.compute_dtype is not None:
        data["compute_dtype"] = FLAGS.compute_dtype
    return jc.from_dict(data, source="bench_scoring")


def bare_batches(config, teacher, corpora):
    """The job's packed examples (teacher space) as static [batch, S] batches, last one padded
    (as the job's handler pads a bundle's last batch)."""
    from beam_jobs.build_examples import masking_config
    from teacher_scoring.examples import create_examples
    from teacher_scoring.teachers import scoring
    examples = []
    tokenizers = {"bench": teacher.tokenizer()}
    for language, path in corpora.items():
        documents = create_examples.read_documents([str(path)], config.document_format)
        examples += [e for e in create_examples.create_examples(
            documents, language, tokenizers, masking_config(config)) if e.num_predictions]
    batches = []
    b = FLAGS.batch_size
    for start in range(0, len(examples), b):
        rows = examples[start:start + b]
        rows += [rows[-1]] * (b - len(rows))
        batches.append({f: np.stack([np.asarray(getattr(e, f)) for e in rows]).astype(
            np.float32 if f == "masked_lm_weights" else np.int32) for f in scoring.INPUTS})
    return examples, batches


class Timer:
    """Wall and CPU seconds of a block."""

    def __enter__(self):
        self._threads = thread_cpu_seconds()
        self.wall, self.cpu = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = cpu_seconds() - self.cpu
        self.threads = thread_groups(self._threads, thread_cpu_seconds())

    def thread_report(self) -> str:
        """The block's CPU seconds by thread name (`thread_groups`)."""
        return ", ".join(f"{name} {cpu:.1f}" for name, cpu in self.threads.items()
                         if cpu >= 0.05) + (f"; threads that ended: "
                                            f"{self.cpu - sum(self.threads.values()):.1f}")


def time_bare(score_fn, batches):
    score_fn(batches[0])["teacher_loss"].numpy()   # trace (excluded)
    with Timer() as timer:
        for batch in batches:
            out = score_fn(batch)
            # Fetch the outputs as the job does (host NumPy).
            out["topk_ids"].numpy(), out["topk_logits"].numpy(), out["teacher_loss"].numpy()
    return timer


def cpu_flags() -> list[str]:
    """The CPU's bfloat16 instruction flags (/proc/cpuinfo), [] if none or unknown."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return sorted({w for w in line.split()
                                   if w in ("avx512_bf16", "amx_bf16", "amx_tile", "avx_vnni")})
    except OSError:
        pass
    return []


class TokenizerTraces:
    """Counts traces of `TeacherTokenizer._tokenize_graph` (its Python body runs only while
    tracing) in this process while active."""

    def __enter__(self):
        from teacher_scoring.examples import tokenization
        self._cls = tokenization.TeacherTokenizer
        self._original = self._cls._tokenize_graph
        self.count = 0
        original = self._original

        def counting(tokenizer, texts):
            self.count += 1
            return original(tokenizer, texts)

        self._cls._tokenize_graph = counting
        return self

    def __exit__(self, *exc):
        self._cls._tokenize_graph = self._original


def bfloat16_fidelity(teacher, f32_fn, bf16_fn, batches):
    """Fidelity of bfloat16 scoring against float32 on `batches` (module docstring)."""
    import tensorflow as tf
    from student import losses
    agree_sets, agree_top1, slots = 0, 0, 0
    logit_err, logit_ref, loss_err, loss_ref = [], [], [], []
    kd = {"float32": [0.0, 0.0], "bfloat16": [0.0, 0.0]}   # numerator, denominator
    for batch in batches:
        a, b = f32_fn(batch), bf16_fn(batch)
        real = batch["masked_lm_weights"] > 0
        ids_a, ids_b = a["topk_ids"].numpy()[real], b["topk_ids"].numpy()[real]
        la, lb = a["topk_logits"].numpy()[real], b["topk_logits"].numpy()[real]
        slots += len(ids_a)
        agree_sets += sum(set(x) == set(y) for x, y in zip(ids_a.tolist(), ids_b.tolist()))
        agree_top1 += int(np.sum(ids_a[:, 0] == ids_b[:, 0]))
        logit_err.append(np.abs(la - lb).ravel())
        logit_ref.append(np.abs(la).ravel())
        rows = batch["masked_lm_weights"].sum(1) > 0
        loss_a, loss_b = a["teacher_loss"].numpy()[rows], b["teacher_loss"].numpy()[rows]
        loss_err.append(np.abs(loss_a - loss_b))
        loss_ref.append(np.abs(loss_a))
        student = teacher.mlm_logits(batch["input_word_ids"], batch["input_mask"],
                                     batch["input_type_ids"], batch["masked_lm_positions"])
        weights = tf.constant(batch["masked_lm_weights"])
        for name, out in (("float32", a), ("bfloat16", b)):
            kd[name][0] += float(losses.kd_loss_sum(student, out["topk_ids"],
                                                    out["topk_logits"], weights))
            kd[name][1] += float(tf.reduce_sum(losses.kd_slot_weights(out["topk_ids"], weights)))
    logit_err, logit_ref = np.concatenate(logit_err), np.concatenate(logit_ref)
    loss_err, loss_ref = np.concatenate(loss_err), np.concatenate(loss_ref)
    kd32, kd16 = kd["float32"][0] / kd["float32"][1], kd["bfloat16"][0] / kd["bfloat16"][1]
    return {"slots": slots, "top8_set_agreement": agree_sets / slots,
            "top1_agreement": agree_top1 / slots,
            "logit_abs_err_mean": float(logit_err.mean()),
            "logit_abs_err_max": float(logit_err.max()),
            "logit_abs_mean": float(logit_ref.mean()),
            "loss_rel_err_mean": float((loss_err / loss_ref).mean()),
            "loss_rel_err_max": float((loss_err / loss_ref).max()),
            "kd_float32": kd32, "kd_bfloat16": kd16, "kd_rel_diff": (kd16 - kd32) / kd32}


def report_fidelity_teacher(config):
    """bfloat16 fidelity (and bare XLA speed) on --fidelity_teacher."""
    from teacher_scoring.teachers import scoring
    from teacher_scoring.teachers.loaders import load_teacher
    trained = load_teacher(FLAGS.fidelity_teacher)
    s = min(FLAGS.seq_length, trained.max_sequence_length or FLAGS.seq_length)
    p = min(FLAGS.max_predictions_per_seq, max(1, round(0.15 * s)))
    corpora = {lang: REPO / "data/corpora/demo" / f"{lang}.txt" for lang in trained.languages
               if (REPO / "data/corpora/demo" / f"{lang}.txt").exists()}
    small = config.replace(seq_length=s, max_predictions_per_seq=p, document_format="line")
    examples, batches = bare_batches(small, trained, corpora)
    f32_fn = scoring.make_score_fn(trained, top_k=FLAGS.top_k, jit_compile=True)
    bf16_fn = scoring.make_score_fn(trained, top_k=FLAGS.top_k, jit_compile=True,
                                    compute_dtype="bfloat16")
    fidelity = bfloat16_fidelity(trained, f32_fn, bf16_fn, batches[:FLAGS.fidelity_batches])
    print(f"bfloat16 fidelity on the trained teacher {trained.name} ({FLAGS.fidelity_teacher}; "
          f"{trained.config.num_layers if trained.config else '?'} layers, vocab "
          f"{trained.vocab_size}, S {s}, P {p}, demo text of {sorted(corpora)}, one line a "
          f"document), {fidelity['slots']} masked slots: top-8 id sets equal "
          f"{fidelity['top8_set_agreement']:.4f}, top-1 equal {fidelity['top1_agreement']:.4f}; "
          f"top-k logit |error| mean {fidelity['logit_abs_err_mean']:.4f}, max "
          f"{fidelity['logit_abs_err_max']:.4f} (mean |logit| {fidelity['logit_abs_mean']:.3f}); "
          f"teacher loss relative error mean {fidelity['loss_rel_err_mean']:.2e}, max "
          f"{fidelity['loss_rel_err_max']:.2e}; student KD loss float32 targets "
          f"{fidelity['kd_float32']:.5f}, bfloat16 targets {fidelity['kd_bfloat16']:.5f}, "
          f"relative difference {fidelity['kd_rel_diff']:+.2e}")
    tokens = sum(int(np.sum(e.input_mask)) for e in examples)
    bf16, f32 = time_bare(bf16_fn, batches), time_bare(f32_fn, batches)
    print(f"  its bare XLA loops: bfloat16 {tokens / bf16.cpu:.0f}, float32 {tokens / f32.cpu:.0f} "
          f"tokens/CPU-s: bfloat16 / float32 = {f32.cpu / bf16.cpu:.2f} in CPU time")


def reencode_float16(output_dir, languages):
    """Bytes of the job's records re-encoded with float16 logits (same order, same writer)."""
    import tensorflow as tf
    from beam_jobs.write_shards import write_records
    from teacher_scoring.records import manifest as manifest_lib
    from teacher_scoring.records import record_schema
    total = 0
    for language in languages:
        folder = os.path.join(output_dir, language)
        manifest = manifest_lib.read_manifest(folder)
        spec16 = record_schema.ShardSpec(manifest.seq_length, manifest.max_predictions_per_seq,
                                         manifest.top_k, "float16")
        for path in manifest_lib.shard_paths(manifest, folder, language):
            records = [record_schema.deserialize(raw.numpy(), manifest.shard_spec)
                       for raw in tf.data.TFRecordDataset(path, compression_type="GZIP")]
            target = path + ".f16"
            write_records(target, (record_schema.serialize(r, spec16) for r in records), "GZIP")
            total += os.path.getsize(target)
            os.remove(target)
    return total


def report_bare(name, timer, sequences, tokens):
    print(f"{name}: {sequences} sequences in {timer.wall:.1f} s wall = "
          f"{tokens / timer.wall:.0f} real tokens/s ({sequences / timer.wall:.1f} seq/s); "
          f"{timer.cpu:.1f} CPU s = {tokens / timer.cpu:.0f} tokens/CPU-s")
    print(f"  its CPU s by thread: {timer.thread_report()}")


def main(argv):
    del argv
    logging.getLogger().setLevel(logging.WARNING)
    from beam_jobs import pipeline
    from teacher_scoring.teachers import scoring
    from teacher_scoring.teachers.loaders import load_teacher

    root = pathlib.Path(FLAGS.work_dir or tempfile.mkdtemp(prefix="bench_scoring_"))
    if (root / "scored").exists():
        shutil.rmtree(root / "scored")
    print(f"work dir: {root}")
    teacher_path, vocab, corpora = build_workspace(root)
    config = job_config(root, teacher_path, corpora)

    teacher = load_teacher(str(teacher_path), name="bench", languages=list(corpora))
    examples, batches = bare_batches(config, teacher, corpora)
    n = len(examples)
    tokens = sum(int(np.sum(e.input_mask)) for e in examples)
    print(f"{n} packed sequences, {tokens} real tokens: token utilization "
          f"{tokens / (n * FLAGS.seq_length):.3f} at S = {FLAGS.seq_length}")
    xla_fn = scoring.make_score_fn(teacher, top_k=FLAGS.top_k, jit_compile=True)
    plain_fn = scoring.make_score_fn(teacher, top_k=FLAGS.top_k, jit_compile=False)
    print(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
    before = None
    if FLAGS.bare_before:
        before = time_bare(xla_fn, batches)
        report_bare("bare loop with XLA (before)", before, n, tokens)

    args = []
    if FLAGS.direct_running_mode:
        args.append(f"--direct_running_mode={FLAGS.direct_running_mode}")
    if FLAGS.direct_num_workers:
        args.append(f"--direct_num_workers={FLAGS.direct_num_workers}")
    effective = pipeline.default_pipeline_args(args)
    before_job = None
    score_traces = scoring.traces()
    profile = None
    if FLAGS.profile_job:
        import cProfile
        profile = cProfile.Profile()
    with TokenizerTraces() as tokenizer_traces, CpuSections() as sections, \
            Timer() as job_timer:
        if profile is not None:
            profile.enable()
        try:
            result = pipeline.run_job(config, args)
        finally:
            if profile is not None:
                profile.disable()
    if profile is not None:
        import pstats
        profile.dump_stats(FLAGS.profile_job)
        for order in ("tottime", "cumulative"):
            print(f"--- job profile ({FLAGS.profile_job}), top {FLAGS.profile_top} by {order}")
            pstats.Stats(profile).sort_stats(order).print_stats(FLAGS.profile_top)
    score_traces = scoring.traces() - score_traces
    written = sum(m.languages[l].examples for l, m in result.manifests.items())
    masked = sum(m.languages[l].masked_tokens for l, m in result.manifests.items())
    job_tokens = sum(m.languages[l].real_tokens for l, m in result.manifests.items())
    scored = sum(v for k, v in result.counters.items() if k.endswith("/scored"))
    if not scored == written == n or job_tokens != tokens:
        print(f"note: the job scored {scored} and wrote {written} sequences ({job_tokens} real "
              f"tokens); the bare loop has {n} ({tokens})")
    print(f"job ({' '.join(effective)}, jit_compile {config.jit_compile}): {scored} sequences "
          f"in {job_timer.wall:.1f} s wall = {tokens / job_timer.wall:.0f} real tokens/s "
          f"({scored / job_timer.wall:.1f} seq/s); {job_timer.cpu:.1f} CPU s = "
          f"{tokens / job_timer.cpu:.0f} tokens/CPU-s")
    print(f"  its CPU s by thread (a pool's threads together): {job_timer.thread_report()}")
    print(f"  its CPU s by section:\n{sections.table(job_timer.cpu)}")
    batch_counters = {k: v for k, v in sorted(result.counters.items())
                      if k.endswith(("/batches", "/padded_rows"))}
    print(f"  inference batches: {batch_counters} (the bare loop: {len(batches)} batches, "
          f"{len(batches) * FLAGS.batch_size - n} padded rows)")
    print(f"  shards: sha256 of their sha256s in name order {shard_digest(root / 'scored')}")

    # The job as before, after the job as now: the first run pays Beam's lazy imports.
    if FLAGS.job_before:
        from beam_jobs import build_examples
        from teacher_scoring.examples.tokenization import TeacherTokenizer
        shared = build_examples.shared_tokenizer
        build_examples.shared_tokenizer = lambda t: TeacherTokenizer(list(t.vocab), t.lower_case)
        try:
            with TokenizerTraces() as old_traces, Timer() as before_job:
                pipeline.run_job(config.replace(output_dir=str(root / "scored_before")), args)
        finally:
            build_examples.shared_tokenizer = shared
        shutil.rmtree(root / "scored_before")
        print(f"job before (a tokenizer per language's DoFn; the teacher reused as now): "
              f"{before_job.wall:.1f} s wall, "
              f"{before_job.cpu:.1f} CPU s = {tokens / before_job.cpu:.0f} tokens/CPU-s; "
              f"tokenizer traces {old_traces.count}")
    after = time_bare(xla_fn, batches)
    report_bare("bare loop with XLA (after)", after, n, tokens)
    plain = None
    if FLAGS.bare_plain:
        plain = time_bare(plain_fn, batches)
        report_bare("bare loop without XLA", plain, n, tokens)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    timings = [t for t in (before, after) if t is not None]
    bare_wall = len(timings) * tokens / sum(t.wall for t in timings)
    bare_cpu = len(timings) * tokens / sum(t.cpu for t in timings)
    if plain is not None:
        print(f"XLA speed-up of the bare loop: {bare_cpu / (tokens / plain.cpu):.2f}x in CPU "
              f"time, {bare_wall / (tokens / plain.wall):.2f}x wall")
    job_cpu = tokens / job_timer.cpu
    if before_job is not None:
        print(f"ratio job before / bare with XLA, CPU time: "
              f"{tokens / before_job.cpu / bare_cpu:.2f}")
    print(f"ratio job / bare with XLA, CPU time:   {job_cpu / bare_cpu:.2f} (target >= 0.9; "
          f"tokens per CPU-second, robust to other processes)")
    print(f"ratio job / bare with XLA, wall clock: {tokens / job_timer.wall / bare_wall:.2f} "
          f"(the bare rate is the mean of the XLA runs; other load moves this)")
    print(f"job CPU time not spent in bare scoring (start-up, compiling, reading, packing, "
          f"masking, mapping, writing): {job_timer.cpu - tokens / bare_cpu:.1f} of "
          f"{job_timer.cpu:.1f} CPU s")
    in_process = (FLAGS.direct_running_mode or "in_memory") == "in_memory"
    where = "" if in_process else " (this process only: the workers are other processes)"
    print(f"traces during the job{where}: scoring functions "
          f"{score_traces} (the launcher check's, which in_memory workers reuse; workers in "
          f"other processes trace their own; bound: 1 for 1 teacher), tokenizer graphs "
          f"{tokenizer_traces.count} (one per teacher vocabulary per process; {len(corpora)} "
          f"languages)")

    if FLAGS.bfloat16:
        bf16_flags = cpu_flags()
        have = bf16_flags or "none (no avx512_bf16 / amx_bf16: bfloat16 is emulated)"
        print(f"bfloat16: CPU bfloat16 flags: {have}")
        bf16_fn = scoring.make_score_fn(teacher, top_k=FLAGS.top_k, jit_compile=True,
                                        compute_dtype="bfloat16")
        bf16 = time_bare(bf16_fn, batches)
        report_bare("bare loop with XLA, bfloat16", bf16, n, tokens)
        f32 = time_bare(xla_fn, batches)
        report_bare("bare loop with XLA, float32 (beside it)", f32, n, tokens)
        print(f"bfloat16 / float32 speed, bare XLA loops side by side: "
              f"{f32.cpu / bf16.cpu:.2f} in CPU time, {f32.wall / bf16.wall:.2f} wall")
        fidelity = bfloat16_fidelity(teacher, xla_fn, bf16_fn, batches[:FLAGS.fidelity_batches])
        print(f"bfloat16 fidelity on {fidelity['slots']} masked slots "
              f"({min(FLAGS.fidelity_batches, len(batches))} batches): top-8 id sets equal "
              f"{fidelity['top8_set_agreement']:.4f}, top-1 equal "
              f"{fidelity['top1_agreement']:.4f}; top-k logit |error| mean "
              f"{fidelity['logit_abs_err_mean']:.4f}, max {fidelity['logit_abs_err_max']:.4f} "
              f"(mean |logit| {fidelity['logit_abs_mean']:.3f}); teacher loss relative error "
              f"mean {fidelity['loss_rel_err_mean']:.2e}, max {fidelity['loss_rel_err_max']:.2e}")
        print(f"student KD loss on the records (student = the float32 teacher): float32 targets "
              f"{fidelity['kd_float32']:.5f}, bfloat16 targets {fidelity['kd_bfloat16']:.5f}, "
              f"relative difference {fidelity['kd_rel_diff']:+.2e}")
        if FLAGS.fidelity_teacher:
            report_fidelity_teacher(config)

    f32_bytes = sum(p.stat().st_size for p in (root / "scored").glob("*/*.tfrecord*"))
    f16_bytes = reencode_float16(str(root / "scored"), list(corpora))
    student_size = next(iter(result.manifests.values())).vocab_size
    dense = 4 * student_size
    print(f"masked positions: {masked} ({masked / max(written, 1):.1f} per sequence); "
          f"student vocab {student_size} tokens (dense float32: {dense} B per position)")
    for name, total, target in (("float32", f32_bytes, 64), ("float16", f16_bytes, 48)):
        per = total / masked
        print(f"{name} logits, GZIP: {total} B = {per:.1f} B per masked position "
              f"(target <= {target}: {'met' if per <= target else 'MISSED'}); "
              f"{dense / per:.0f}x smaller than dense")
    if not FLAGS.keep and not FLAGS.work_dir:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    app.run(main)
