"""What `--setup_file ./setup.py` ships to remote workers (Dataflow, or any runner whose
workers install the job's package) is enough to run the scoring job.

Beam's stager builds an sdist of the repository (`Stager._build_setup_package`: `python -m
build --sdist`, or `python setup.py sdist` where `build` is not installed) and every worker pip-installs
it. This test builds the sdist with Beam's own function, installs it with pip into a fresh
virtual environment outside the repository (the third-party requirements come from this
environment's site-packages through a path entry, without its `.pth` files, so the editable
install of the repository is not visible), checks that every package of the project resolves
inside the new environment, and runs the scoring job there from a working directory outside
the repository, under an audit hook that records every file the job opens, lists or globs:
nothing under the repository may be touched (no reads of configs/, data/ or source files
next to the working tree)."""

import json
import pathlib
import subprocess
import sys
import sysconfig
import textwrap

import pytest

from tests.beam_jobs.conftest import workspace  # noqa: F401  (the session fixture)

pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("beam_jobs", "teacher_scoring", "vocab", "student", "finetuning")

# Runs the launcher like `python -m beam_jobs.score_corpora ...`, recording every path under
# the repository that the process opens, lists, globs or changes into.
DRIVER = textwrap.dedent("""
    import json, os, runpy, sys

    REPO = os.path.realpath(sys.argv[1])
    REPORT = sys.argv[2]
    # The installed requirements (here a virtual environment that happens to live in the
    # checkout, reached through a path entry) are not the repository's working tree.
    REQUIREMENTS = os.path.realpath(sys.argv[3])
    touched = []

    def audit(event, args):
        if event in ("open", "os.listdir", "os.scandir", "glob.glob", "os.chdir") and args:
            path = args[0]
            if isinstance(path, bytes):
                path = os.fsdecode(path)
            if isinstance(path, str) and path:
                full = os.path.realpath(path)
                if (full == REPO or full.startswith(REPO + os.sep)) and not (
                        full == REQUIREMENTS or full.startswith(REQUIREMENTS + os.sep)):
                    touched.append([event, full])

    sys.addaudithook(audit)
    repo_on_path = [p for p in sys.path if p and os.path.realpath(p) in (REPO, REPO + os.sep)]
    sys.argv = ["score_corpora"] + sys.argv[4:]
    code = 0
    try:
        runpy.run_module("beam_jobs.score_corpora", run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        code = exit_.code or 0
    import beam_jobs
    with open(REPORT, "w") as f:
        json.dump({"touched": touched, "repo_on_path": repo_on_path, "exit": code,
                   "beam_jobs": beam_jobs.__file__}, f)
    sys.exit(code)
""")


def _run(command, cwd, timeout=600, env=None):
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            env=env)
    assert result.returncode == 0, (f"{command}\n{result.stdout[-3000:]}\n"
                                    f"{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def installed_env(tmp_path_factory):
    """(python of a fresh venv holding the project from its sdist only, sdist path)."""
    from apache_beam.runners.portability.stager import Stager

    root = tmp_path_factory.mktemp("packaging")
    dist = root / "dist"
    dist.mkdir()
    sdist = pathlib.Path(Stager._build_setup_package(str(REPO / "setup.py"), str(dist)))
    assert sdist.name.endswith(".tar.gz") and sdist.parent == dist
    env_dir = root / "env"
    _run([sys.executable, "-m", "venv", str(env_dir)], cwd=root)
    python = env_dir / "bin" / "python"
    site = pathlib.Path(_run([str(python), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"],
                             cwd=root).stdout.strip())
    # The requirements already installed here, as a plain path entry: .pth files inside it
    # (this checkout's editable install among them) are not processed.
    (site / "zz_requirements.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
          "--no-build-isolation", str(sdist)], cwd=root)
    return python, sdist, site


def test_the_sdist_holds_every_package_and_installs_outside_the_repository(installed_env):
    python, sdist, site = installed_env
    import tarfile
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    for package in PACKAGES:
        assert any(n.endswith(f"/{package}/__init__.py") for n in names), package
    assert not any("/tests/" in n for n in names)
    probe = ("import json, importlib; print(json.dumps({p: importlib.import_module(p).__file__ "
             f"for p in {PACKAGES!r}}}))")
    located = json.loads(_run([str(python), "-c", probe], cwd=site.parent).stdout)
    for package, path in located.items():
        assert pathlib.Path(path).resolve().is_relative_to(site.resolve()), (package, path)


def test_the_installed_package_runs_the_job_outside_the_repository(installed_env, workspace,
                                                                   tmp_path):
    python, _, site = installed_env
    work = tmp_path / "elsewhere"
    work.mkdir()
    config = workspace.config(work / "scored", copies_mode="all")
    # A small corpus: 30 English lines, both English teachers.
    corpus = work / "en.txt"
    lines = pathlib.Path(workspace.corpora["en"]).read_text(encoding="utf-8").split("\n")[:30]
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config["languages"] = {"en": {"corpus": [str(corpus)], "num_shards": 1}}
    config["teachers"] = {k: v for k, v in config["teachers"].items() if k.startswith("en_")}
    import yaml
    (work / "job.yaml").write_text(yaml.safe_dump(config))
    (work / "driver.py").write_text(DRIVER)
    report = work / "report.json"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "TF_CPP_MIN_LOG_LEVEL": "2",
           "CUDA_VISIBLE_DEVICES": ""}
    result = _run([str(python), "driver.py", str(REPO), str(report),
                   sysconfig.get_paths()["purelib"], "--config=job.yaml",
                   "--direct_running_mode=in_memory"], cwd=work, env=env)
    facts = json.loads(report.read_text())
    assert facts["exit"] == 0
    assert pathlib.Path(facts["beam_jobs"]).resolve().is_relative_to(site.resolve())
    assert facts["repo_on_path"] == []
    assert facts["touched"] == [], facts["touched"][:20]
    assert "en: " in result.stdout and "dead letters: 0" in result.stdout
    manifest = json.loads((work / "scored" / "en" / "manifest.json").read_text())
    assert manifest["languages"]["en"]["examples"] > 0
    assert (work / "scored" / "en" / "en-00000-of-00001.tfrecord.gz").stat().st_size > 1000
