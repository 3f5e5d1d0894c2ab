"""`finetuning.run`: argument parsing and checks, end to end on a tiny teacher and student
(POS on the bundled EWT slice learns beyond the majority tag; results written; reruns skip
finished runs), and the command line with NER, classification and a test file."""

import dataclasses
import json
import os
import re
import subprocess
import sys

import pytest

from finetuning import data
from finetuning import run as run_lib
from finetuning import training
from tests.conftest import REPO_ROOT
from tests.finetuning.fixtures import BOUN, EWT, conllu_blocks, split_bundled, write_text


def test_parse_task():
    task = run_lib.parse_task("name=pos,type=pos,language=en,train=a.conllu,dev=b.conllu,"
                              "test=c.conllu,format=conllu,seq_length=64")
    assert task == run_lib.TaskSpec("pos", "pos", "en", "a.conllu", "b.conllu", "c.conllu",
                                    "conllu", 64)
    assert task.key == "pos/en"
    minimal = run_lib.parse_task("name=ner,type=ner,language=tr,train=t.tsv,dev=d.tsv")
    assert (minimal.test, minimal.format, minimal.seq_length) == (None, "auto", None)
    for value, message in (
            ("name=pos,type=pos,language=en,train=a", "missing ['dev']"),
            ("name=pos,type=qa,language=en,train=a,dev=b", "type 'qa'; known"),
            ("name=pos,kind=pos", "unknown key 'kind'"),
            ("name=pos,name=x,type=pos", "key 'name' given twice"),
            ("name=pos,type=pos,language=en,train=a,dev=b,oops", "'oops' is not key=value"),
            ("name=p o s,type=pos,language=en,train=a,dev=b", "must match"),
            ("name=c,type=classification,language=en,train=a,dev=b,format=tsv",
             "format applies to pos/ner files only"),
            ("name=p,type=pos,language=en,train=a,dev=b,format=xml", "format 'xml'"),
            ("name=p,type=pos,language=en,train=a,dev=b,seq_length=big", "not an integer"),
            ("name=p,type=pos,language=en,train=a,dev=b,seq_length=2", "seq_length 2 < 3")):
        with pytest.raises(run_lib.RunError, match=re.escape(message)):
            run_lib.parse_task(value)


def test_parse_models_and_check_plan(teacher_folders):
    teacher = run_lib.parse_teacher(f"en={teacher_folders['en']}")
    assert (teacher.language, teacher.name) == ("en", "en_tiny")  # teacher.json's name
    named = run_lib.parse_teacher(f"en:bert=/x/y")
    assert (named.language, named.name, named.path) == ("en", "bert", "/x/y")
    assert run_lib.parse_teacher("tr=/models/berturk/").name == "berturk"
    student = run_lib.parse_student("kd=/s/export")
    assert (student.kind, student.name) == ("student", "kd")
    for parse, value in ((run_lib.parse_teacher, "en"), (run_lib.parse_student, "kd")):
        with pytest.raises(run_lib.RunError, match="expected"):
            parse(value)
    pos_tr = run_lib.parse_task("name=pos,type=pos,language=tr,train=a,dev=b")
    with pytest.raises(run_lib.RunError, match=r"pos/tr: no --teacher tr=PATH"):
        run_lib.check_plan([pos_tr], [teacher], [student])
    pos_en = run_lib.parse_task("name=pos,type=pos,language=en,train=a,dev=b")
    with pytest.raises(run_lib.RunError, match="given twice"):
        run_lib.check_plan([pos_en, pos_en], [teacher], [])
    with pytest.raises(run_lib.RunError, match="two teachers of en are named 'en_tiny'"):
        run_lib.check_plan([pos_en], [teacher, teacher], [])
    with pytest.raises(run_lib.RunError, match="'kd' given twice"):
        run_lib.check_plan([pos_en], [teacher], [student, student])
    assert [m.name for m in run_lib.models_of(pos_en, [teacher, named], [student])] == [
        "en_tiny", "bert", "kd"]


def _majority(path) -> float:
    """Accuracy of always predicting the most frequent tag of the file."""
    labels = [label for s in data.read_conllu(path).sentences for label in s.labels]
    return max(labels.count(label) for label in set(labels)) / len(labels)


@pytest.mark.slow
def test_pos_end_to_end_learns_writes_results_and_resumes(tmp_path, teacher_folders,
                                                          student_export):
    train, dev = split_bundled(EWT, tmp_path)
    task = run_lib.parse_task(f"name=pos,type=pos,language=en,train={train},dev={dev}")
    teachers = [run_lib.parse_teacher(f"en={teacher_folders['en']}"),
                run_lib.parse_teacher(f"tr={teacher_folders['tr']}")]  # not used: no tr task
    students = [run_lib.parse_student(f"kd={student_export[0]}")]
    hparams = training.Hyperparameters(batch_size=8, max_epochs=5, patience=5)
    grid = [1e-4, 5e-3]
    out = str(tmp_path / "out")
    lines = []
    result = run_lib.run([task], teachers, students, out, hparams, seeds=[1, 2], seq_length=64,
                         log=lines.append, learning_rates=grid)
    majority = _majority(dev)
    models = {(m["kind"], m["name"]): m for m in result["tasks"][0]["models"]}
    assert list(models) == [("lookup", "lookup"), ("scratch", "en_tiny"),
                            ("teacher", "en_tiny"), ("student", "kd")]
    lookup = models[("lookup", "lookup")]
    assert lookup["mean"] > majority and lookup["std"] is None
    for key, model in models.items():
        if key[0] == "lookup":
            continue
        assert model["seeds"] == [1, 2] and model["std"] is not None
        assert model["mean"] > majority + 0.1, (model, majority, lines)
        # The grid ran with seed 1; the chosen rate is the dev-best one, and seed 2 used it.
        scores = {float(rate): score for rate, score in model["grid"].items()}
        assert set(scores) == set(grid)
        assert model["learning_rate"] == max(scores, key=scores.get)
        assert model["dev_scores"][0] == max(scores.values())
        assert model["train_score"] is not None and model["dev_unseen"] is not None
    assert result["rdt"]["pos"]["kd"]["per_language"]["en"] == pytest.approx(
        100 * (models[("student", "kd")]["mean"] - models[("teacher", "en_tiny")]["mean"])
        / models[("teacher", "en_tiny")]["mean"])
    assert sum("epoch 5/5:" in line for line in lines) == 9  # 3 models x (2 rates + 1 seed)
    assert any(line.startswith("[pos/en] pos, S=64, 17 labels; examples used: train 150/150 "
                               "(36 multiword tokens skipped); dev 50/50") for line in lines)
    assert any(re.match(r"\[pos/en\] scratch en_tiny: learning rate [\d.e-]+ chosen on dev", l)
               for l in lines)
    for kind in ("json", "md", "png"):
        assert os.path.getsize(os.path.join(out, f"results.{kind}")) > 0
    saved = json.loads(open(os.path.join(out, "results.json"), encoding="utf-8").read())
    assert saved["tasks"][0]["models"][3]["scores"] == models[("student", "kd")]["scores"]
    text = open(os.path.join(out, "results.md"), encoding="utf-8").read()
    assert "| en | student `kd` |" in text and "| en | `lookup` |" in text
    chosen = models[("student", "kd")]["learning_rate"]
    record = os.path.join(out, "runs", "pos", "en", "student-kd", f"lr-{chosen:g}",
                          "seed-2.json")
    assert json.loads(open(record, encoding="utf-8").read())["result"]["best_epoch"] >= 1

    # Rerun: every run is finished, nothing is trained again, the same results come out.
    again = []
    rerun = run_lib.run([task], teachers, students, out, hparams, seeds=[1, 2], seq_length=64,
                        log=again.append, learning_rates=grid)
    assert sum("finished earlier, kept" in line for line in again) == 6
    assert not any(re.search(r"epoch \d+/", line) for line in again)
    assert rerun["tasks"] == json.loads(json.dumps(result["tasks"]))
    # One more seed: only that one runs, at each model's chosen rate.
    more = []
    run_lib.run([task], teachers, students, out, hparams, seeds=[1, 2, 3], seq_length=64,
                log=more.append, learning_rates=grid)
    assert sum("epoch 5/5:" in line for line in more) == 3
    assert all(f"lr {models[('student', 'kd')]['learning_rate']:g} epoch" in line
               for line in more if "student kd seed 3" in line and re.search(r"epoch \d+/\d+:", line))
    # Other settings for the same OUT: refused, naming the setting.
    with pytest.raises(run_lib.RunError, match=r"seed-1.json: this finished run was made with "
                                               r"other settings \(hyperparameters.max_epochs: "
                                               r"5 then, 6 now\)"):
        run_lib.run([task], teachers, students, out,
                    training.Hyperparameters(batch_size=8, max_epochs=6, patience=5),
                    seeds=[1], seq_length=64, log=lambda _: None, learning_rates=grid)
    with pytest.raises(run_lib.RunError, match=r"S=256 exceeds the 128 positions of teacher "
                                               r"en_tiny"):
        run_lib.run([task], teachers, students, str(tmp_path / "other"), hparams, seeds=[1],
                    log=lambda _: None, learning_rates=grid)
    with pytest.raises(run_lib.RunError, match="paper_table7 fixes the learning rate"):
        run_lib.run([task], teachers, students, str(tmp_path / "other"), hparams, seeds=[1],
                    log=lambda _: None, learning_rates=grid, protocol_name="paper_table7")


def test_runs_recorded_before_patience_after_rise_are_kept_when_it_trains_them_alike(
        tmp_path):
    hyperparameters = dataclasses.asdict(training.Hyperparameters())
    assert hyperparameters["patience_after_rise"]
    now = dict(task=dict(name="ner"), hyperparameters=hyperparameters, seed=1)
    then = dict(now, hyperparameters={k: v for k, v in hyperparameters.items()
                                      if k != "patience_after_rise"})

    def recorded(name, best_epoch, stopped):
        path = str(tmp_path / f"{name}.json")
        run_lib.write_json(path, dict(settings=then, result=dict(best_epoch=best_epoch,
                                                                 stopped=stopped)))
        return path

    # Rose above its first epoch, or ran to the cap: either rule trains it alike.
    for path in (recorded("rose", 3, "patience"), recorded("capped", 1, "max_epochs")):
        assert run_lib.finished_run(path, now)["result"]["best_epoch"] in (1, 3)
    # Stopped by patience at its first epoch's score: made under the old rule's defect, so
    # it is not a finished run of the rule asked for now (None: rerun it).
    stuck = recorded("stuck", 1, "patience")
    assert run_lib.finished_run(stuck, now) is None
    # Asking for the old rule keeps it.
    old_rule = dict(now, hyperparameters=dict(hyperparameters, patience_after_rise=False))
    assert run_lib.finished_run(stuck, old_rule)["result"]["best_epoch"] == 1
    # Any other difference is still refused, naming it.
    other = dict(now, hyperparameters=dict(hyperparameters, max_epochs=99))
    with pytest.raises(run_lib.RunError, match=r"stuck.json: this finished run was made with "
                                               r"other settings \(hyperparameters.max_epochs"):
        run_lib.finished_run(stuck, other)


def _cli(*args, timeout=900):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    env.pop("PYTHONPATH", None)
    return subprocess.run([sys.executable, "-m", "finetuning.run", *args], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.slow
def test_command_line_ner_classification_and_test_file(tmp_path, teacher_folders,
                                                       student_export):
    # NER (IOB2) and classification files made here, in Turkish words from the BOUN slice.
    words = [line.split("\t")[1] for block in conllu_blocks(BOUN)[:60]
             for line in block.split("\n") if line[:1].isdigit() and "-" not in
             line.split("\t")[0]]
    sentences = [words[i:i + 8] for i in range(0, 400, 8)]
    tags = ["B-PER", "I-PER", "O", "O", "B-LOC", "O", "B-ORG", "I-ORG"]
    ner = "\n\n".join("\n".join(f"{w}\t{t}" for w, t in zip(s, tags)) for s in sentences) + "\n"
    ner_train = write_text(tmp_path / "ner-train.tsv", ner)
    ner_dev = write_text(tmp_path / "ner-dev.tsv", ner.split("\n\n", 30)[-1])
    reviews = "".join(f"{'pos' if i % 2 else 'neg'}\t{' '.join(s)}\n"
                      for i, s in enumerate(sentences))
    cls_train = write_text(tmp_path / "cls-train.tsv", reviews)
    cls_dev = write_text(tmp_path / "cls-dev.tsv", reviews[: len(reviews) // 2])
    out = tmp_path / "out"
    common = [f"--output_dir={out}", f"--teacher=tr={teacher_folders['tr']}",
              f"--student=kd={student_export[0]}", "--seeds=1", "--max_epochs=1",
              "--learning_rates=3e-3",
              "--max_train_examples=40", "--max_eval_examples=20", "--seq_length=32"]
    done = _cli(*common,
                f"--task=name=ner,type=ner,language=tr,train={ner_train},dev={ner_dev},"
                f"test={ner_dev}",
                f"--task=name=sentiment,type=classification,language=tr,train={cls_train},"
                f"dev={cls_dev}")
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    stdout = done.stdout
    assert "[ner/tr] ner, S=32, 7 labels; examples used: train 40/50; dev 20/20; test 20/20" \
        in stdout
    assert "[sentiment/tr] classification, S=32, 2 labels" in stdout
    assert re.search(r"\[ner/tr\] teacher tr_tiny seed 1 lr 0.003: best dev f1 [\d.]+ at epoch "
                     r"1/1 \(not converged\), test ", stdout)
    assert "| tr | `lookup` |" in stdout and "| tr | scratch `tr_tiny` |" in stdout
    assert re.search(r"^warning: ner/tr: teacher tr_tiny: 1 of 1 runs stopped at --max_epochs",
                     stdout, re.M)
    assert "| language | model | ner (F1, test) | sentiment (acc, dev) |" in stdout
    assert "| **RDT (%)** | student `kd` |" in stdout
    assert "INFO" not in done.stderr and "I external" not in done.stderr
    saved = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert [t["split"] for t in saved["tasks"]] == ["test", "dev"]
    assert saved["tasks"][0]["files"]["test"]["used"] == 20

    # Errors: a clear message and a non-zero exit before any training.
    bad = write_text(tmp_path / "bad-dev.tsv", "kitap\tB-MISC\n")
    failed = _cli(*common, f"--task=name=ner,type=ner,language=tr,train={ner_train},dev={bad}")
    assert failed.returncode != 0
    assert f"error: {bad}:1: label 'B-MISC' never occurs in the training file" in failed.stderr
    failed = _cli(*common, f"--task=name=ner,type=ner,language=en,train={ner_train},dev={bad}")
    assert "error: --task ner/en: no --teacher en=PATH" in failed.stderr
    failed = _cli(*[c for c in common if not c.startswith("--learning_rates")],
                  "--learning_rates=1e-3,fast",
                  f"--task=name=ner,type=ner,language=tr,train={ner_train},dev={ner_dev}")
    assert "error: --learning_rates '1e-3,fast': 'fast' is not a number" in failed.stderr


def test_workers_claim_variants_costliest_first_and_the_final_call_aggregates(
        tmp_path, teacher_folders, student_export):
    train, dev = split_bundled(EWT, tmp_path)
    task = run_lib.parse_task(f"name=pos,type=pos,language=en,train={train},dev={dev}")
    teachers = [run_lib.parse_teacher(f"en={teacher_folders['en']}")]
    students = [run_lib.parse_student(f"kd={student_export[0]}")]
    hparams = training.Hyperparameters(batch_size=8, max_epochs=1, patience=1)
    out = str(tmp_path / "out")
    claims = os.path.join(out, run_lib.CLAIMS_DIR)
    # Another worker has claimed the teacher: this one runs scratch and kd only, writes no
    # results, and leaves a claim for each variant it took.
    os.makedirs(os.path.join(claims, "pos", "en"))
    open(os.path.join(claims, "pos", "en", "teacher-en_tiny.claim"), "w").close()
    lines = []
    assert run_lib.run([task], teachers, students, out, hparams, seeds=[1], seq_length=64,
                       log=lines.append, learning_rates=[1e-3], claims_dir=claims) is None
    ran = sorted(line.split(" seed 1 ")[0] for line in lines if re.search(r"best dev", line))
    assert ran == ["[pos/en] scratch en_tiny", "[pos/en] student kd"], lines
    assert sorted(os.listdir(os.path.join(claims, "pos", "en"))) == [
        "scratch-en_tiny.claim", "student-kd.claim", "teacher-en_tiny.claim"]
    assert not os.path.exists(os.path.join(out, "results.json"))
    # A second worker finds everything claimed: it runs nothing.
    idle = []
    run_lib.run([task], teachers, students, out, hparams, seeds=[1], seq_length=64,
                log=idle.append, learning_rates=[1e-3], claims_dir=claims)
    assert not any("best dev" in line for line in idle)
    # The final call runs what is left (the teacher) and aggregates every model.
    final = []
    result = run_lib.run([task], teachers, students, out, hparams, seeds=[1], seq_length=64,
                         log=final.append, learning_rates=[1e-3])
    assert [line.split(" seed 1 ")[0] for line in final if "best dev" in line] == [
        "[pos/en] teacher en_tiny"]
    assert [(m["kind"], m["name"]) for m in result["tasks"][0]["models"]] == [
        ("lookup", "lookup"), ("scratch", "en_tiny"), ("teacher", "en_tiny"), ("student", "kd")]


@pytest.mark.slow
def test_command_line_processes_share_the_work_and_aggregate(tmp_path, teacher_folders,
                                                             student_export):
    train, dev = split_bundled(EWT, tmp_path)
    out = tmp_path / "out"
    done = _cli(f"--output_dir={out}", f"--teacher=en={teacher_folders['en']}",
                f"--student=kd={student_export[0]}", "--seeds=2", "--max_epochs=1",
                "--learning_rates=1e-3", "--seq_length=32", "--max_train_examples=40",
                "--max_eval_examples=20", "--processes=2",
                f"--task=name=pos,type=pos,language=en,train={train},dev={dev}")
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    # Three variants x 2 seeds, each run once, by one of the two workers.
    runs = re.findall(r"^\[worker (\d)\] \[pos/en\] (\w+ \w+) seed (\d) lr 0.001: best dev",
                      done.stdout, re.M)
    assert sorted((name, seed) for _, name, seed in runs) == [
        (name, seed) for name in ("scratch en_tiny", "student kd", "teacher en_tiny")
        for seed in "12"]
    assert {worker for worker, _, _ in runs} == {"0", "1"}
    assert re.search(r"^\[worker 0\] worker 0 done", done.stdout, re.M)
    assert "| en | student `kd` |" in done.stdout
    saved = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert [m["kind"] for m in saved["tasks"][0]["models"]] == [
        "lookup", "scratch", "teacher", "student"]
    # A worker that fails stops the command, naming it.
    failed = _cli(f"--output_dir={tmp_path / 'bad'}", f"--teacher=en={teacher_folders['en']}",
                  "--seeds=1", "--processes=2", "--task=name=pos,type=pos,language=en,"
                  f"train={train},dev={tmp_path / 'missing.conllu'}")
    assert failed.returncode != 0
    assert "exited with status 1; its last lines:" in failed.stderr
    assert "missing.conllu" in failed.stderr
