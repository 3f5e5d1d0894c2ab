"""The manifest's `packing` field: written and read back, absent in older manifests (they were
packed within documents), an unknown value refused naming the file and the field."""

import json

import pytest

from teacher_scoring.records import manifest as mf
from tests.teacher_scoring.records.test_manifest import make_manifest


def test_packing_round_trips(tmp_path):
    manifest = make_manifest(packing="full_sentences")
    mf.write_manifest(manifest, str(tmp_path))
    assert json.loads((tmp_path / "manifest.json").read_text())["packing"] == "full_sentences"
    back = mf.read_manifest(str(tmp_path))
    assert back.packing == "full_sentences" and back == manifest


def test_default_is_within_document_and_older_manifests_load_as_it(tmp_path):
    assert make_manifest().packing == "within_document"
    data = json.loads(make_manifest().to_json())
    del data["packing"]   # a manifest written before the field
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    assert mf.read_manifest(str(tmp_path)).packing == "within_document"


def test_unknown_packing_names_file_and_field(tmp_path):
    data = json.loads(make_manifest().to_json())
    data["packing"] = "doc_sentences"
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(data))
    with pytest.raises(mf.ManifestError,
                       match=r"manifest\.json: field 'packing' must be one of .*'doc_sentences'"):
        mf.read_manifest(str(path))
    data["packing"] = 1
    path.write_text(json.dumps(data))
    with pytest.raises(mf.ManifestError, match=r"manifest\.json: field 'packing' must be str"):
        mf.read_manifest(str(path))
