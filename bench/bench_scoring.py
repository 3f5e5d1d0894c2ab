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
import resource
import shutil
import tempfile
import time

from absl import app, flags
import numpy as np

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


def cpu_seconds() -> float:
    """CPU time (user + system, all threads) of this process and its finished children (the
    DirectRunner's multi-processing workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


class Timer:
    """Wall and CPU seconds of a block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = cpu_seconds() - self.cpu


def time_bare(score_fn, batches):
    score_fn(batches[0])["teacher_loss"].numpy()   # trace (excluded)
    with Timer() as timer:
        for batch in batches:
            out = score_fn(batch)
            # Fetch the outputs as the job does (host NumPy).
            out["topk_ids"].numpy(), out["topk_logits"].numpy(), out["teacher_loss"].numpy()
    return timer


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
    with Timer() as job_timer:
        result = pipeline.run_job(config, args)
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

    after = time_bare(xla_fn, batches)
    report_bare("bare loop with XLA (after)", after, n, tokens)
    plain = time_bare(plain_fn, batches)
    report_bare("bare loop without XLA", plain, n, tokens)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    timings = [t for t in (before, after) if t is not None]
    bare_wall = len(timings) * tokens / sum(t.wall for t in timings)
    bare_cpu = len(timings) * tokens / sum(t.cpu for t in timings)
    print(f"XLA speed-up of the bare loop: {bare_cpu / (tokens / plain.cpu):.2f}x in CPU time, "
          f"{bare_wall / (tokens / plain.wall):.2f}x wall")
    job_cpu = tokens / job_timer.cpu
    print(f"ratio job / bare with XLA, CPU time:   {job_cpu / bare_cpu:.2f} (target >= 0.9; "
          f"tokens per CPU-second, robust to other processes)")
    print(f"ratio job / bare with XLA, wall clock: {tokens / job_timer.wall / bare_wall:.2f} "
          f"(the bare rate is the mean of the XLA runs; other load moves this)")
    print(f"job CPU time not spent in bare scoring (start-up, compiling, reading, packing, "
          f"masking, mapping, writing): {job_timer.cpu - tokens / bare_cpu:.1f} of "
          f"{job_timer.cpu:.1f} CPU s")

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
