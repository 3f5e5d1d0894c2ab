"""Every config under configs/ agrees with its partner, and the paper's students with the paper.

A scoring config (configs/scoring/, loaded with beam_jobs.job_config) writes the shards a student
config (configs/student/, loaded with student.config) reads: S, P, k and the logits dtype must be
equal, and the scoring config's `packing` must be the student config's `data.packing` (the
manifest records it), or train.py refuses the shards after hours of scoring. The paper's students
are checked
against the paper: Table 1 (one monolingual teacher a language for Student_similar and
Student_dissimilar), §4.3 (mBERT + MuRIL over mBERT's 104 languages; which copies each student
keeps), §4.2/A.2 (vocab sizes). The README's walk-through names what the configs name.
"""

from __future__ import annotations

import dataclasses
import os
import re

import pytest

from beam_jobs import job_config
from student import config as student_config
from teacher_scoring.teachers.loaders import common as loader_common
from tests.conftest import REPO_ROOT

CONFIGS = REPO_ROOT / "configs"
WORKSPACE = "gs://BUCKET/md"

# Teacher name in the configs -> (the paper's name of the model, public folder, format, casing).
# The name is the folder's base name (the loader's default name).
TEACHERS = {
    "uncased_L-12_H-768_A-12": ("BERT", "uncased_L-12_H-768_A-12", "google_bert_checkpoint",
                                True),
    "bert-base-german-cased": ("DeepSet", "bert-base-german-cased", "hf_folder", False),
    "bert-base-italian-cased": ("ItalianBERT", "dbmdz/bert-base-italian-cased", "hf_folder",
                                False),
    "bert-base-spanish-wwm-cased": ("BETO", "dccuchile/bert-base-spanish-wwm-cased",
                                    "hf_folder", False),
    "bert-base-arabert": ("AraBERT", "aubmindlab/bert-base-arabert", "hf_folder", None),
    "bert-base-finnish-cased-v1": ("FinBERT", "TurkuNLP/bert-base-finnish-cased-v1",
                                   "hf_folder", False),
    "bert-base-turkish-cased": ("BERTurk", "dbmdz/bert-base-turkish-cased", "hf_folder", False),
    "chinese_L-12_H-768_A-12": ("ChineseBERT", "chinese_L-12_H-768_A-12",
                                "google_bert_checkpoint", True),
    "multi_cased_L-12_H-768_A-12": ("mBERT", "multi_cased_L-12_H-768_A-12",
                                    "google_bert_checkpoint", False),
    "muril-base-cased": ("MuRIL", "google/muril-base-cased", "hf_folder", False),
}

# google-research/bert multilingual.md: the 104 languages of the cased multilingual release, as
# Wikipedia codes. Chinese (Simplified) and (Traditional) are both the zh Wikipedia: 103 corpora.
MBERT_LANGUAGES = (
    "af an ar ast az azb ba bar be bg bn bpy br bs ca ce ceb cs cv cy da de el en es et eu fa fi "
    "fr fy ga gl gu he hi hr ht hu hy id io is it ja jv ka kk kn ko ky la lb lmo lt lv mg min mk "
    "ml mn mr ms my nds ne new nl nn no oc pa pl pms pnb pt ro ru scn sco sh sk sl sq sr su sv sw "
    "ta te tg th tl tr tt uk ur uz vi vo war yo zh").split()
# §4.3: "MuRIL covers 12 of these (11 Indian languages + English)".
MURIL_LANGUAGES = "bn en gu hi kn ml mr ne pa ta te ur".split()
NON_MURIL = [lang for lang in MBERT_LANGUAGES if lang not in MURIL_LANGUAGES]


@dataclasses.dataclass(frozen=True)
class PaperStudent:
    """One student of the paper and what the paper says of it."""

    name: str
    scoring: str                       # configs/scoring/<scoring>.yaml
    student: str                       # configs/student/<student>.yaml
    teachers: dict                     # language -> the paper's names of its teachers
    copies: dict                       # language -> manifest copies mode
    vocab_size: int                    # the paper's figure
    vocab: str                         # the student vocab folder (shared by §4.3)


def _single(teachers: dict) -> dict:
    return {lang: "single" for lang in teachers}


SIMILAR = {"de": {"DeepSet"}, "en": {"BERT"}, "es": {"BETO"}, "it": {"ItalianBERT"}}
DISSIMILAR = {"ar": {"AraBERT"}, "en": {"BERT"}, "fi": {"FinBERT"}, "tr": {"BERTurk"},
              "zh": {"ChineseBERT"}}
MURIL = {**{lang: {"mBERT"} for lang in NON_MURIL}, **{lang: {"MuRIL"} for lang in MURIL_LANGUAGES}}
MBERT = {lang: {"mBERT"} for lang in MBERT_LANGUAGES}
BOTH = {**MBERT, **{lang: {"mBERT", "MuRIL"} for lang in MURIL_LANGUAGES}}


def _both(mode: str) -> dict:
    return {lang: mode if lang in MURIL_LANGUAGES else "single" for lang in MBERT_LANGUAGES}


PAPER_STUDENTS = [
    PaperStudent("Student_similar", "student_similar", "student_similar", SIMILAR,
                 _single(SIMILAR), 99_112, f"{WORKSPACE}/vocab/similar"),
    PaperStudent("Student_dissimilar", "student_dissimilar", "student_dissimilar", DISSIMILAR,
                 _single(DISSIMILAR), 180_996, f"{WORKSPACE}/vocab/dissimilar"),
    PaperStudent("Student_MuRIL", "student_muril", "student_mbert_muril", MURIL, _single(MURIL),
                 288_973, f"{WORKSPACE}/vocab/mbert_muril"),
    PaperStudent("Student_mBERT", "student_mbert", "student_mbert_muril", MBERT, _single(MBERT),
                 288_973, f"{WORKSPACE}/vocab/mbert_muril"),
    PaperStudent("Student_Both_all", "student_both_all", "student_mbert_muril", BOTH,
                 _both("all"), 288_973, f"{WORKSPACE}/vocab/mbert_muril"),
    PaperStudent("Student_Both_best", "student_both_best", "student_mbert_muril", BOTH,
                 _both("best"), 288_973, f"{WORKSPACE}/vocab/mbert_muril"),
]
# The other pairs: (scoring config, student config).
OTHER_PAIRS = [("demo", "demo")]
# Configs without a scoring partner: the unit-test student, and the teacher pretraining configs
# (plain MLM on the teacher's own example shards, written by pretrain_teacher itself).
UNPAIRED = {"student/tiny.yaml", "teacher/demo.yaml", "teacher/tiny.yaml"}


def load_pair(scoring: str, student: str):
    return (job_config.load_job_config(str(CONFIGS / "scoring" / f"{scoring}.yaml")),
            student_config.load_config(str(CONFIGS / "student" / f"{student}.yaml")))


def check_shapes_agree(job, config) -> None:
    assert job.seq_length == config.data.seq_length
    assert job.max_predictions_per_seq == config.data.max_predictions_per_seq
    assert job.top_k == config.data.top_k
    assert job.logits_dtype == config.data.logits_dtype
    assert job.seq_length <= config.encoder.max_position_embeddings


def check_packing_agrees(scoring: str, student: str, job, config) -> None:
    """The scoring config's `packing` is the student config's `data.packing`: the scoring job
    records it in every manifest and the student trainer refuses a folder whose `packing`
    differs from `data.packing` (student.shard_sources)."""
    assert job.packing == config.data.packing, (
        f"configs/scoring/{scoring}.yaml: field 'packing' is {job.packing!r} but "
        f"configs/student/{student}.yaml: field 'data.packing' is {config.data.packing!r}; the "
        f"student trainer would refuse the shards (their manifests say {job.packing!r})")


ALL_PAIRS = [(s.scoring, s.student) for s in PAPER_STUDENTS] + OTHER_PAIRS


def test_every_config_is_covered():
    found = {str(path.relative_to(CONFIGS)) for path in CONFIGS.rglob("*.yaml")}
    covered = set(UNPAIRED)
    for scoring, student in ALL_PAIRS:
        covered |= {f"scoring/{scoring}.yaml", f"student/{student}.yaml"}
    assert found == covered, (f"not covered by a pair: {sorted(found - covered)}; "
                              f"missing: {sorted(covered - found)}")


@pytest.mark.parametrize("paper", PAPER_STUDENTS, ids=lambda s: s.name)
def test_paper_pair_agrees_with_each_other_and_the_paper(paper):
    job, config = load_pair(paper.scoring, paper.student)
    check_shapes_agree(job, config)
    # The paper: S = 512, k = 8 (§4.1, A.2).
    assert (job.seq_length, job.top_k) == (512, 8)
    assert config.encoder.vocab_size == paper.vocab_size
    assert job.student_vocab == paper.vocab
    assert job.output_dir == f"{WORKSPACE}/scored/{paper.scoring[len('student_'):]}"
    # Teachers and languages: Table 1 / §4.3.
    assert sorted(job.languages) == sorted(paper.teachers)
    for lang, expected in paper.teachers.items():
        assert {TEACHERS[t][0] for t in job.teachers_of(lang)} == expected, lang
        assert job.copies_mode_of(lang) == paper.copies[lang], lang
        assert job.languages[lang].corpus == (f"{WORKSPACE}/corpora/{lang}/*.txt",)
    for name, teacher in job.teachers.items():
        _, folder, fmt, _ = TEACHERS[name]
        assert teacher.path == f"{WORKSPACE}/teachers/{folder}"
        assert teacher.format == fmt
        assert os.path.basename(teacher.path) == name  # the loader's default name
    # The configs name each other, and the paper's vocab size, in their comments.
    scoring_text = (CONFIGS / "scoring" / f"{paper.scoring}.yaml").read_text(encoding="utf-8")
    student_text = (CONFIGS / "student" / f"{paper.student}.yaml").read_text(encoding="utf-8")
    assert f"configs/student/{paper.student}.yaml" in scoring_text
    assert f"{paper.scoring}.yaml" in student_text
    figure = f"{paper.vocab_size:,}"
    assert figure in scoring_text and figure in student_text


def test_the_section_4_3_students_share_one_vocab_and_differ_only_in_teachers_and_copies():
    jobs = [job_config.load_job_config(str(CONFIGS / "scoring" / f"{s.scoring}.yaml")).to_dict()
            for s in PAPER_STUDENTS if s.student == "student_mbert_muril"]
    assert len(jobs) == 4 and len(MBERT_LANGUAGES) == 103 and len(MURIL_LANGUAGES) == 12
    varying = {"output_dir", "teachers", "copies_mode"}
    for job in jobs[1:]:
        assert {k: v for k, v in job.items() if k not in varying} == {
            k: v for k, v in jobs[0].items() if k not in varying}
    all_outputs = [job_config.load_job_config(
        str(CONFIGS / "scoring" / f"{s.scoring}.yaml")).output_dir for s in PAPER_STUDENTS]
    assert len(set(all_outputs)) == len(all_outputs)


def test_google_release_folders_state_their_casing_by_name():
    """Google's release folders hold no teacher.json: their casing must come from the name."""
    for name, (_, folder, fmt, lower_case) in TEACHERS.items():
        by_name = loader_common.lower_case_from_release_name(f"{WORKSPACE}/teachers/{folder}")
        if fmt == "google_bert_checkpoint":
            assert by_name is not None and by_name[0] is lower_case, name
        elif lower_case is not None:  # Hub folders have tokenizer_config.json; names agree.
            assert by_name is not None and by_name[0] is lower_case, name


@pytest.mark.parametrize("scoring, student", OTHER_PAIRS)
def test_other_pairs_agree(scoring, student):
    check_shapes_agree(*load_pair(scoring, student))


@pytest.mark.parametrize("scoring, student", ALL_PAIRS)
def test_every_pair_packs_the_way_its_student_reads(scoring, student):
    check_packing_agrees(scoring, student, *load_pair(scoring, student))


def test_packing_check_fails_on_a_mismatching_pair():
    scoring, student = "student_similar", "student_similar"
    job, config = load_pair(scoring, student)
    check_packing_agrees(scoring, student, job, config)
    assert job.packing == config.data.packing == "within_document"
    # The scoring side switched to full sentences (it needs short_seq_prob 0).
    full = job.replace(packing="full_sentences", short_seq_prob=0.0)
    with pytest.raises(AssertionError, match=r"student_similar\.yaml: field 'packing' is "
                                             r"'full_sentences' but .*'data\.packing' is "
                                             r"'within_document'"):
        check_packing_agrees(scoring, student, full, config)
    # The student side switched: the same refusal the other way round.
    student_full = student_config.load_config(
        str(CONFIGS / "student" / f"{student}.yaml"), [{"data": {"packing": "full_sentences"}}])
    with pytest.raises(AssertionError, match=r"'data\.packing' is 'full_sentences'"):
        check_packing_agrees(scoring, student, job, student_full)
    # Both switched: they agree again.
    check_packing_agrees(scoring, student, full, student_full)


@pytest.mark.parametrize("name", sorted(UNPAIRED))
def test_unpaired_configs_load(name):
    config = student_config.load_config(str(CONFIGS / name))
    if name.startswith("teacher/"):  # plain MLM (pretrain_teacher also forces lambda 0)
        assert config.loss.lambda_start == 0.0 and config.loss.lambda_schedule == "constant"


def _walkthrough() -> str:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## With real teachers and corpora"):]
    block = section[section.index("```bash\n") + len("```bash\n"):]
    return block[:block.index("```")].replace("\\\n", " ")


def test_readme_walkthrough_names_what_the_configs_name():
    text = _walkthrough()
    commands = [line.strip() for line in text.splitlines()
                if line.strip() and not line.strip().startswith("#")]

    def command(start: str) -> list[str]:
        found = [c for c in commands if c.startswith(start)]
        assert found, f"README walk-through has no command starting with {start!r}"
        return found

    scoring_file = re.search(r"sed \"s/BUCKET/\$BUCKET/g\" (configs/scoring/\S+) > (\S+)",
                             text)
    assert scoring_file, "the walk-through must make its copy of a scoring config with sed"
    config_path, copy_name = scoring_file.groups()
    job = job_config.load_job_config(str(REPO_ROOT / config_path))

    def local(path: str) -> str:  # the config's paths as the walk-through writes them
        return path.replace("gs://BUCKET/", "gs://$BUCKET/")

    # 0. The teacher checked is one of the job's.
    checked = command(".venv/bin/python -m teacher_scoring.teachers.loaders")[0].split()[3]
    assert checked in {local(t.path) for t in job.teachers.values()}
    # 1. The union is built from exactly the job's teachers, under the job's names.
    build = command(".venv/bin/python -m vocab.build_union")[0]
    specs = dict(spec.split("=", 1) for spec in re.findall(r"--teacher (\S+)", build))
    assert specs == {name: local(t.path) + "/vocab.txt" for name, t in job.teachers.items()}
    assert f"--output {local(job.student_vocab)}" in build
    # 2. The job runs the copy of the config.
    assert f"--config {copy_name}" in command(".venv/bin/python -m beam_jobs.score_corpora")[0]
    # 3. The student: the paired student config, the job's vocab and every language's shards.
    train = command(".venv/bin/python student/train.py")[0]
    paper = next(s for s in PAPER_STUDENTS if f"configs/scoring/{s.scoring}.yaml" == config_path)
    assert f"--config_file configs/student/{paper.student}.yaml" in train
    assert f"--student_vocab {local(job.student_vocab)}" in train
    shards = dict(s.split("=", 1) for s in re.findall(r"--shards (\S+)", train))
    assert shards == {lang: f"{local(job.output_dir)}/{lang}" for lang in job.languages}
    # 4. Evaluation on every language of the held-out run.
    evaluate = command(".venv/bin/python student/evaluate.py")[0]
    dev = re.search(r"--output_dir (\S+)", command(
        ".venv/bin/python -m beam_jobs.score_corpora")[1]).group(1)
    shards = dict(s.split("=", 1) for s in re.findall(r"--shards (\S+)", evaluate))
    assert shards == {lang: f"{dev}/{lang}" for lang in job.languages}
