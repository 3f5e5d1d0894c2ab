"""The scoring config's `packing` key: within_document by default (BERT's format, the paper's),
full_sentences on request; bad values and full_sentences with short_seq_prob are refused
naming the file, the key and the value."""

import glob

import pytest

from beam_jobs import job_config
from beam_jobs.build_examples import masking_config
from tests.conftest import REPO_ROOT


def _data(**changes):
    data = {
        "student_vocab": "v", "output_dir": "o", "seq_length": 64,
        "max_predictions_per_seq": 10, "top_k": 8, "masked_lm_prob": 0.15,
        "whole_word_masking": True, "seed": 1, "logits_dtype": "float32", "compression": "",
        "copies_mode": "all", "inference_batch_size": 8,
        "languages": {"en": {"corpus": ["c/*.txt"], "num_shards": 1}},
        "teachers": {"t": {"path": "p", "languages": ["en"]}},
    }
    data.update(changes)
    return data


def test_default_is_within_document_and_full_sentences_reaches_the_masking_config():
    config = job_config.from_dict(_data(), source="x.yaml")
    assert config.packing == "within_document"
    assert masking_config(config).packing == "within_document"
    config = job_config.from_dict(_data(packing="full_sentences"), source="x.yaml")
    assert config.packing == "full_sentences"
    assert masking_config(config).packing == "full_sentences"
    assert config.to_dict()["packing"] == "full_sentences"       # the manifest's `config`
    assert config.replace(inference_batch_size=4).packing == "full_sentences"


@pytest.mark.parametrize("changes,message", [
    ({"packing": "roberta"},
     r"x\.yaml: packing: must be one of \['within_document', 'full_sentences'\], got 'roberta'"),
    ({"packing": True}, r"x\.yaml: packing: must be a string, got True"),
    ({"packing": "full_sentences", "short_seq_prob": 0.1},
     r"x\.yaml: short_seq_prob: must be 0 with packing 'full_sentences'.*got 0\.1"),
])
def test_bad_packing_is_refused_naming_file_key_and_value(changes, message):
    with pytest.raises(job_config.JobConfigError, match=message):
        job_config.from_dict(_data(**changes), source="x.yaml")


def test_within_document_keeps_short_seq_prob():
    config = job_config.from_dict(_data(packing="within_document", short_seq_prob=0.1),
                                  source="x.yaml")
    assert (config.packing, config.short_seq_prob) == ("within_document", 0.1)


def test_every_scoring_config_keeps_the_papers_format():
    paths = sorted(glob.glob(str(REPO_ROOT / "configs" / "scoring" / "*.yaml")))
    assert paths
    for path in paths:
        assert job_config.load_job_config(path).packing == "within_document", path
