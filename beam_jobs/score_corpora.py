r"""Launcher of the MergeDistill scoring job (paper §3.1, steps 1-3).

Tokenizes and masks every language's corpus with each of its teachers, scores the copies
offline with the teachers (top-k logits per masked token + teacher loss), maps all ids to the
student vocabulary, keeps all copies or the best one, and writes TFRecord shards with a
manifest per language. See docs/scoring_job.md.

    # DirectRunner, in_memory (the default):
    python -m beam_jobs.score_corpora --config configs/scoring/demo.yaml

    # Dask: an existing scheduler (without --dask_client_address the runner starts a
    # LocalCluster on this machine); beam_jobs/dask_runner.py completes Beam's DaskRunner:
    python -m beam_jobs.score_corpora --config configs/scoring/demo.yaml \
        --runner DaskRunner --dask_client_address tcp://SCHEDULER_HOST:8786

    # Beam's portable protocol (what Dataflow Runner v2 runs), SDK harnesses from a worker
    # pool (python -m apache_beam.runners.worker.worker_pool_main --service_port 50000):
    python -m beam_jobs.score_corpora --config configs/scoring/demo.yaml \
        --runner PortableRunner --job_endpoint embed \
        --environment_type EXTERNAL --environment_config localhost:50000

    # Dataflow:
    python -m beam_jobs.score_corpora --config configs/scoring/student_similar.yaml \
        --runner DataflowRunner --project $PROJECT --region $REGION \
        --temp_location gs://$BUCKET/tmp --setup_file ./setup.py \
        --requirements_file requirements.txt

Flags not defined here are Beam pipeline options (--runner, --direct_num_workers, --project,
--dask_client_address, --dask_npartitions, --environment_type, ...; docs/scoring_job.md,
"Other runners"). Every teacher is loaded and test-scored before the pipeline is built: a bad checkpoint
stops the job before any data is read.
"""

from __future__ import annotations

import logging
import sys

from absl import app, flags

FLAGS = flags.FLAGS

flags.DEFINE_string("config", None, "Job config YAML (configs/scoring/*.yaml).")
flags.DEFINE_string("output_dir", None, "Overrides the config's output_dir.")
flags.DEFINE_bool("overwrite", False,
                  "Replace the shards / manifests / dead letters of a previous run in the output "
                  "folder (refused otherwise).")
flags.DEFINE_integer("inference_batch_size", None, "Overrides the config's inference_batch_size.")
flags.DEFINE_bool("validate_only", False,
                  "Only validate the config, corpora, student vocab, teachers and output folder.")
flags.mark_flag_as_required("config")


def main(argv):
    from beam_jobs import job_config, pipeline  # pylint: disable=import-outside-toplevel

    logging.getLogger().setLevel(logging.INFO)
    pipeline_args = argv[1:]
    try:
        config = job_config.load_job_config(FLAGS.config)
        overrides = {}
        if FLAGS.output_dir:
            overrides["output_dir"] = FLAGS.output_dir
        if FLAGS.inference_batch_size:
            overrides["inference_batch_size"] = FLAGS.inference_batch_size
        if overrides:
            config = config.replace(**overrides)
        job = pipeline.prepare_job(config, overwrite=FLAGS.overwrite)
    except (job_config.JobConfigError, pipeline.JobSetupError) as error:
        logging.error("%s", error)
        print(f"error: {error}", file=sys.stderr)
        return 2
    if FLAGS.validate_only:
        print(f"{FLAGS.config}: valid ({len(job.teachers)} teachers, "
              f"{len(job.config.languages)} languages)")
        return 0
    result = pipeline.run_job(job.config, pipeline_args, overwrite=FLAGS.overwrite, job=job)
    for language, manifest in result.manifests.items():
        entry = manifest.languages[language]
        print(f"{language}: {entry.examples} examples, {entry.masked_tokens} masked tokens, "
              f"{len(entry.shards)} shards, token utilization {entry.token_utilization:.3f}")
    print(f"dead letters: {result.dead_letters}; output: {result.output_dir}; "
          f"{result.seconds:.1f} s")
    return 0


def _parse_flags(argv):
    """absl parses its own flags; the rest (Beam pipeline options) goes to main."""
    return FLAGS(argv, known_only=True)


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
