"""The job config's `compute_dtype` (float32 | bfloat16) from the YAML to the manifest, and the
tokenizers shared by the languages of a worker process."""

import pytest
import yaml

from beam_jobs import build_examples, job_config, pipeline
from beam_jobs.job_config import JobConfigError, load_job_config
from teacher_scoring.records import manifest as manifest_lib
from teacher_scoring.teachers.teacher import Teacher
from tests.beam_jobs.test_job_config import _valid

IN_MEMORY = ["--direct_running_mode=in_memory"]


def _write(tmp_path, data) -> str:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_compute_dtype_defaults_to_float32_and_is_recorded(tmp_path):
    config = load_job_config(_write(tmp_path, _valid()))
    assert config.compute_dtype == "float32"
    assert config.to_dict()["compute_dtype"] == "float32"
    config = load_job_config(_write(tmp_path, {**_valid(), "compute_dtype": "bfloat16"}))
    assert config.compute_dtype == "bfloat16"
    again = job_config.from_dict(config.to_dict(), source="again")
    assert again.compute_dtype == "bfloat16" and again.to_dict() == config.to_dict()


@pytest.mark.parametrize("value, message", [
    ("float16", r"must be one of \['float32', 'bfloat16'\], got 'float16'"),
    ("bf16", r"must be one of \['float32', 'bfloat16'\], got 'bf16'"),
    (16, "must be a string, got 16"),
])
def test_a_bad_compute_dtype_names_file_key_and_value(tmp_path, value, message):
    path = _write(tmp_path, {**_valid(), "compute_dtype": value})
    with pytest.raises(JobConfigError, match=rf"^{path}: compute_dtype: {message}"):
        load_job_config(path)


def _one_teacher_config(workspace, output_dir, **changes) -> dict:
    data = workspace.config(output_dir, **changes)
    data["languages"] = {"en": {"corpus": data["languages"]["en"]["corpus"], "num_shards": 1}}
    data["teachers"] = {"en_a": data["teachers"]["en_a"]}
    return data


def test_bfloat16_for_a_teacher_that_cannot_be_rebuilt_is_refused_before_the_run(
        workspace, tmp_path, monkeypatch):
    from teacher_scoring.teachers import loaders
    real_load = loaders.load_teacher

    def load_opaque(*args, **kwargs):
        teacher = real_load(*args, **kwargs)
        return Teacher(teacher.name, teacher.vocab, teacher.lower_case, teacher.languages,
                       teacher.mlm_logits, max_sequence_length=teacher.max_sequence_length)

    monkeypatch.setattr(loaders, "load_teacher", load_opaque)
    data = _one_teacher_config(workspace, tmp_path / "out", compute_dtype="bfloat16")
    with pytest.raises(pipeline.JobSetupError,
                       match=r"bf16\.yaml: teachers\.en_a .*compute_dtype bfloat16 needs a "
                             r"tf-models BERT teacher"):
        pipeline.prepare_job(job_config.from_dict(data, source="bf16.yaml"))
    data["compute_dtype"] = "float32"
    pipeline.prepare_job(job_config.from_dict(data, source="bf16.yaml"))


def test_languages_of_a_teacher_share_one_tokenizer():
    vocab = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "##c")
    spec = build_examples.TeacherSpec(name="t", vocab=vocab, lower_case=False)
    same = build_examples.TeacherSpec(name="t", vocab=tuple(list(vocab)), lower_case=False)
    uncased = build_examples.TeacherSpec(name="t", vocab=vocab, lower_case=True)
    other = build_examples.TeacherSpec(name="u", vocab=vocab + ("d",), lower_case=False)
    first = build_examples.shared_tokenizer(spec)
    assert build_examples.shared_tokenizer(same) is first
    assert build_examples.shared_tokenizer(uncased) is not first
    assert build_examples.shared_tokenizer(uncased).lower_case is True
    assert build_examples.shared_tokenizer(other) is not first
    assert build_examples.shared_tokenizer(other).vocab_size == len(vocab) + 1


@pytest.mark.slow
def test_a_bfloat16_job_records_it_in_the_manifest(workspace, tmp_path):
    from teacher_scoring.teachers import scoring
    out = tmp_path / "scored"
    data = _one_teacher_config(workspace, out, compute_dtype="bfloat16")
    before = scoring.traces("en_a")
    result = pipeline.run_job(job_config.from_dict(data, source="bf16.yaml"), IN_MEMORY)
    manifest = manifest_lib.read_manifest(str(out / "en"))
    assert manifest.config["compute_dtype"] == "bfloat16"
    assert manifest.languages["en"].examples > 0
    assert result.counters["en/en_a/scored"] == manifest.languages["en"].examples
    # One: the in_memory worker reuses the function the launcher's check traced at its shape.
    assert scoring.traces("en_a") - before == 1


@pytest.mark.slow
def test_an_in_process_job_builds_each_teacher_once_and_traces_it_once(workspace, tmp_path,
                                                                       monkeypatch):
    """in_memory: the workers run in the launcher's process and reuse the teacher and scoring
    function its check built and traced (beam_jobs.loaded_teachers), then the job drops them."""
    from beam_jobs import loaded_teachers
    from teacher_scoring.teachers import loaders, scoring
    real_load = loaders.load_teacher
    loads = []

    def counted_load(*args, **kwargs):
        loads.append(kwargs["name"])
        return real_load(*args, **kwargs)

    monkeypatch.setattr(loaders, "load_teacher", counted_load)
    config = job_config.from_dict(workspace.config(tmp_path / "out"), source="once.yaml")
    names = sorted(config.teachers)
    assert len(names) == 3
    before = {name: scoring.traces(name) for name in names}
    job = pipeline.prepare_job(config)
    assert all(loaded_teachers.held(pipeline._scoring_key(name, job.config)) for name in names)
    result = pipeline.run_job(job.config, IN_MEMORY, job=job)
    assert sum(result.counters[f"{lang}/{name}/scored"] for lang in ("en", "de")
               for name in names if f"{lang}/{name}/scored" in result.counters) > 0
    assert sorted(loads) == names
    assert {name: scoring.traces(name) - before[name] for name in names} == \
        {name: 1 for name in names}
    assert not any(loaded_teachers.held(pipeline._scoring_key(name, job.config).teacher)
                   for name in names)


def test_a_failed_prepare_job_holds_no_teacher(workspace, tmp_path):
    from beam_jobs import loaded_teachers
    data = workspace.config(tmp_path / "out")
    data["teachers"]["de_a"]["path"] = str(workspace.teachers["en_b"][0])
    data["teachers"]["de_a"]["format"] = "auto"
    config = job_config.from_dict(data, source="bad.yaml")
    with pytest.raises(pipeline.JobSetupError, match=r"teachers\.de_a.*vocabulary sha256"):
        pipeline.prepare_job(config)
    resolved = pipeline.resolve_config(config)
    assert not any(loaded_teachers.held(pipeline._scoring_key(name, resolved).teacher)
                   for name in config.teachers)
