r"""Fine-tuning speed: steps/s and per-run overhead of finetuning.training, side by side.

  python bench/bench_finetuning.py [--teacher FOLDER] [--train FILE --dev FILE]
      [--max_train 2000 --max_eval 500 --seq_length 64 --epochs 3 --converge]

Variants, each over the same encoder, data and seed:

  before     random batches (padded to the batch's longest row), a new model traced per run:
             what finetuning.training did before the length buckets and the reused model
  buckets    length-bucketed batches, one traced model reused by every run (the default)
  xla        buckets + the steps compiled with XLA (--jit_compile)

For each: the model build (FineTuner), the first epoch (it traces / compiles), steady epochs
(steps/s), dev prediction. Then the shared costs (encoder loading, featurization), and, with
--converge, a whole run of the default protocol at one learning rate to convergence: its wall
time and the share of the overhead (load + featurize + build + first-epoch extra) in it.

Without --teacher a random encoder of the experiment's teacher shape (2 x 128, FFN 512,
WordPiece vocabulary trained on the bundled demo text) is built: speed does not depend on the
weights. Without --train/--dev, ../shared/downstream's UD EWT is used if present, else the
bundled EWT slice (data/downstream). Figures are wall-clock on this machine; run the variants in
one process so that they share its load.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_EWT = os.path.join(REPO, "..", "shared", "downstream", "pos")


def random_teacher(folder: str, vocab_size: int) -> str:
    """A random 2x128 teacher folder (tfm_checkpoint) with a vocab trained on demo en text."""
    from teacher_scoring.teachers import export
    from teacher_scoring.teachers.loaders import bert_mlm
    from vocab.train_wordpiece import train_wordpiece

    with open(os.path.join(REPO, "data", "corpora", "demo", "en.txt"), encoding="utf-8") as f:
        lines = [line for line in f.read().split("\n") if line.strip()]
    vocab = train_wordpiece(lines, vocab_size, True)
    config = bert_mlm.BertMLMConfig(vocab_size=len(vocab), hidden_size=128, num_layers=2,
                                    num_attention_heads=2, intermediate_size=512,
                                    max_position_embeddings=128)
    model = bert_mlm.build_bert_mlm(config)
    export.export_tfm_checkpoint(model.encoder_network, model.masked_lm, vocab, folder,
                                 lower_case=True, languages=["en"], name="en_random_2x128")
    return folder


def random_batches(lengths, batch_size, rng):
    """The old batch order: a random permutation cut into batches."""
    order = rng.permutation(len(lengths))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def measure(variant: str, make_encoder, task, feats, hparams, epochs: int, seed: int) -> dict:
    from finetuning import run as run_lib
    from finetuning import training

    original = training.training_order
    if variant == "before":
        training.training_order = random_batches
    try:
        hp = dataclasses.replace(hparams, jit_compile=variant == "xla", max_epochs=epochs,
                                 patience=epochs)
        began = time.monotonic()
        tuner = training.FineTuner(make_encoder, task.spec.type, len(task.labels), hp)
        build = time.monotonic() - began
        steps = int(np.ceil(len(feats["train"]) / hp.batch_size))
        tuner.reset(seed, hp, steps * epochs)
        rng = np.random.default_rng(seed)
        epoch_seconds, predict_seconds = [], []
        padding = []
        for _ in range(epochs):
            began = time.monotonic()
            tuner.train_epoch(feats["train"], rng)
            epoch_seconds.append(time.monotonic() - began)
            began = time.monotonic()
            run_lib.scorer(task, task.dev)(tuner.predict(feats["dev"]))
            predict_seconds.append(time.monotonic() - began)
        order = training.training_order(feats["train"].lengths, hp.batch_size, rng)
        lengths = feats["train"].lengths
        for rows in order:
            width = min(feats["train"].seq_length, 8 * int(np.ceil(lengths[rows].max() / 8)))
            padding.append((width * len(rows), int(lengths[rows].sum())))
    finally:
        training.training_order = original
    steady = float(np.mean(epoch_seconds[1:])) if epochs > 1 else epoch_seconds[0]
    return dict(variant=variant, build=build, first_epoch=epoch_seconds[0], steady_epoch=steady,
                steps_per_second=steps / steady, first_epoch_extra=epoch_seconds[0] - steady,
                predict=float(np.mean(predict_seconds[1:] or predict_seconds)),
                real_token_share=sum(r for _, r in padding) / sum(p for p, _ in padding))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", help="a teacher folder (default: a random 2x128 one)")
    parser.add_argument("--vocab_size", type=int, default=8000)
    parser.add_argument("--train")
    parser.add_argument("--dev")
    parser.add_argument("--max_train", type=int, default=2000)
    parser.add_argument("--max_eval", type=int, default=500)
    parser.add_argument("--seq_length", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--variants", default="before,buckets,xla")
    parser.add_argument("--converge", action="store_true",
                        help="also time a whole default-protocol run to convergence")
    args = parser.parse_args()

    began = time.monotonic()
    from finetuning import encoders
    from finetuning import run as run_lib
    from finetuning import training
    imports = time.monotonic() - began

    train, dev = args.train, args.dev
    if not train:
        if os.path.isdir(SHARED_EWT):
            train = os.path.join(SHARED_EWT, "en_ewt-ud-train.conllu")
            dev = os.path.join(SHARED_EWT, "en_ewt-ud-dev.conllu")
        else:
            train = dev = os.path.join(REPO, "data", "downstream", "en_ewt-ud-dev.200.conllu")
    teacher = args.teacher or random_teacher(tempfile.mkdtemp(), args.vocab_size)
    spec = run_lib.parse_task(f"name=pos,type=pos,language=en,train={train},dev={dev}")
    task = run_lib.load_task_data(spec, args.seq_length, args.max_train, args.max_eval)
    began = time.monotonic()
    encoder = encoders.load_teacher_encoder(None, teacher)
    load = time.monotonic() - began
    began = time.monotonic()
    feats = {split: run_lib.featurize(task, examples, encoder.tokenizer)
             for split, examples in (("train", task.train), ("dev", task.dev))}
    featurize = time.monotonic() - began
    hparams = training.Hyperparameters(learning_rate=args.learning_rate)
    print(f"data: {train} ({len(task.train)} sentences, {len(feats['train'])} rows; dev "
          f"{len(task.dev)}), S={args.seq_length}, encoder {encoder.description}")
    print(f"shared costs: imports {imports:.1f} s, encoder load {load:.1f} s, featurize train+dev "
          f"{featurize:.1f} s (once per model and task)")
    rows = [measure(variant, lambda: encoder.fresh_encoder(hparams.dropout), task, feats, hparams,
                    args.epochs, seed=1) for variant in args.variants.split(",")]
    base = rows[0]
    print("\n| variant | model build s | first epoch s | steady epoch s | steps/s | "
          "speed-up | dev predict s | real tokens / padded |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['variant']} | {row['build']:.1f} | {row['first_epoch']:.1f} | "
              f"{row['steady_epoch']:.2f} | {row['steps_per_second']:.1f} | "
              f"{base['steady_epoch'] / row['steady_epoch']:.2f}x | {row['predict']:.2f} | "
              f"{row['real_token_share']:.2f} |")
    print("(per run, `before` pays model build + first-epoch extra again; the others once per "
          "model and task)")
    if args.converge:
        default = dataclasses.replace(hparams)
        began = time.monotonic()
        tuner = training.FineTuner(lambda: encoder.fresh_encoder(default.dropout), "pos",
                                   len(task.labels), default)
        build = time.monotonic() - began
        result = training.fine_tune(tuner, feats["train"], feats["dev"],
                                    run_lib.scorer(task, task.dev), default, seed=1,
                                    score_train=run_lib.scorer(task, task.train),
                                    log=lambda _: None)
        epochs = [e["seconds"] for e in result["epochs"]]
        extra = max(0.0, epochs[0] - float(np.median(epochs[1:] or epochs)))
        overhead = load + featurize + build + extra
        total = overhead + result["seconds"]
        print(f"\nconverge (lr {default.learning_rate:g}, patience {default.patience}, "
              f"jit {default.jit_compile}): {result['epochs_trained']} epochs (best "
              f"{result['best_epoch']}, converged {result['converged']}), dev "
              f"{100 * result['dev']['score']:.2f}, run {result['seconds']:.1f} s; with load, "
              f"featurize and build {total:.1f} s; overhead {overhead:.1f} s = "
              f"{100 * overhead / total:.1f}% (load {load:.1f}, featurize {featurize:.1f}, build "
              f"{build:.1f}, first-epoch extra {extra:.1f})")


if __name__ == "__main__":
    main()
