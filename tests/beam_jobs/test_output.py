"""The output folder: stale temporary folders of killed runs are removed, live ones kept."""

import datetime
import json
import os
import socket
import subprocess
import sys

from beam_jobs import output

NOW = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.timezone.utc)


def _dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _temp_dir(root, name, info=None):
    path = root / name
    path.mkdir(parents=True)
    (path / "en").mkdir()
    (path / "en" / "en-00000-of-00001.tfrecord").write_bytes(b"partial")
    if info is not None:
        (path / output.RUN_INFO).write_text(json.dumps(info))
    return str(path)


def test_make_temp_dir_records_its_launcher(tmp_path):
    path = output.make_temp_dir(str(tmp_path))
    assert os.path.basename(path).startswith(output.TMP_PREFIX)
    info = json.loads(open(os.path.join(path, output.RUN_INFO)).read())
    assert info["host"] == socket.gethostname() and info["pid"] == os.getpid()
    stale, reason = output.stale_reason(path)
    assert not stale and "still running" in reason


def test_only_stale_temp_dirs_of_killed_runs_are_removed(tmp_path):
    host = socket.gethostname()
    started = (NOW - datetime.timedelta(hours=1)).isoformat()
    killed = _temp_dir(tmp_path, ".tmp-scoring-20260301-110000-aaaaaaaa",
                       {"host": host, "pid": _dead_pid(), "started": started})
    live = _temp_dir(tmp_path, ".tmp-scoring-20260301-110000-bbbbbbbb",
                     {"host": host, "pid": os.getpid(), "started": started})
    # Launched on another machine: its pid cannot be checked, so only its age counts.
    remote_recent = _temp_dir(tmp_path, ".tmp-scoring-20260301-110000-cccccccc",
                              {"host": "worker-7", "pid": 1, "started": started})
    remote_old = _temp_dir(tmp_path, ".tmp-scoring-20260220-110000-dddddddd",
                           {"host": "worker-7", "pid": 1,
                            "started": (NOW - datetime.timedelta(days=9)).isoformat()})
    # Killed before run.json was written (or by an older version): the name's time counts.
    unmarked_old = _temp_dir(tmp_path, ".tmp-scoring-20260210-080000-eeeeeeee")
    unmarked_unknown = _temp_dir(tmp_path, ".tmp-scoring-notatime")
    other = _temp_dir(tmp_path, ".tmp-other-20260101-000000-ffffffff")
    (tmp_path / ".tmp-scoring-a-file").write_text("not a folder")

    cleanup = output.remove_stale_temp_dirs(str(tmp_path), now=NOW)

    removed = dict(cleanup.removed)
    assert sorted(removed) == sorted([killed, remote_old, unmarked_old])
    assert "pid" in removed[killed] and "no longer running" in removed[killed]
    assert "launched on worker-7, started 216.0 h ago" == removed[remote_old]
    assert f"no readable {output.RUN_INFO}" in removed[unmarked_old]
    kept = dict(cleanup.kept)
    assert sorted(kept) == sorted([live, remote_recent, unmarked_unknown])
    assert "still running" in kept[live] and "start time unknown" in kept[unmarked_unknown]
    for path in removed:
        assert not os.path.exists(path)
    for path in list(kept) + [other, str(tmp_path / ".tmp-scoring-a-file")]:
        assert os.path.exists(path)


def test_no_output_folder_yet(tmp_path):
    cleanup = output.remove_stale_temp_dirs(str(tmp_path / "not_there"))
    assert cleanup.removed == [] and cleanup.kept == []
