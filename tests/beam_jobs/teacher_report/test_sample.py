"""The sample: order-free, seeded, blank lines dropped, and the Beam transform equal to the
in-process one."""

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from beam_jobs.teacher_report import sample as sample_lib
from tests.conftest import demo_lines


def test_sample_documents_is_order_free_and_matches_beam():
    lines = [line.encode() for line in demo_lines("en", 60)] + [b"", b"   "]
    sample = sample_lib.sample_documents(lines, 20, seed=5)
    assert len(sample) == 20 and b"" not in sample
    assert sample_lib.sample_documents(list(reversed(lines)), 20, seed=5) == sample
    assert sample_lib.sample_documents(lines, 20, seed=6) != sample
    with beam.Pipeline(options=beam.options.pipeline_options.PipelineOptions(
            ["--runner=DirectRunner", "--direct_running_mode=in_memory"])) as pipeline:
        sampled = (pipeline | beam.Create(lines)
                   | sample_lib.SampleDocuments("en", 20, seed=5))
        assert_that(sampled, equal_to(sample))
