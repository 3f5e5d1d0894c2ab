"""`python -m beam_jobs.teacher_report --config ... --sample_paragraphs ... --output_dir ...`
(beam_jobs/teacher_report/cli.py)."""

from absl import app

from beam_jobs.teacher_report import cli

if __name__ == "__main__":
    cli.define_flags()
    app.run(cli.main, flags_parser=cli.parse_flags)
