"""Beam 2.77's DaskRunner, completed where the scoring job needs it (`--runner DaskRunner`).

`apache_beam.runners.dask` translates a pipeline into dask.bag operations. As released in Beam
2.77 it cannot run this job; each gap below was hit running the job on it (docs/scoring_job.md,
"Other runners"):

1. **only the last transform is computed**: `run_pipeline` computes the bag of the last
   transform visited, so of the job's two sinks (WriteShards, WriteDeadLetters) only one runs,
   and nothing fails;
2. **tagged outputs are mixed**: a multi-output ParDo (`with_outputs`, `beam.Partition`,
   RunInference's `with_exception_handling`, every step's dead-letter output) puts all its
   outputs in one bag, and every consumer of any of its outputs reads all of them;
3. **outputs of `finish_bundle` are dropped**: a partition's outputs are collected before
   `finish_bundle` runs, so `BatchElements` (inside RunInference) loses the last batch of every
   partition and Beam's file sinks their written files;
4. **`beam.io.Read` is a no-op**: it is replaced by a `_Read` that has no translation, so
   `ReadFromText` and the job's blank-line source produce nothing;
5. **no metrics**: `DaskRunnerResult.metrics()` raises NotImplementedError, and no metrics
   container is installed in the workers (every counter increment is lost), so the manifests'
   counters could not be written;
6. **DoFn set-up per partition**: `setup`/`teardown` run around every partition, so a teacher
   would be loaded and compiled again for every partition.

This runner subclasses Beam's (same options: `--dask_client_address`, `--dask_npartitions`,
...) and translates the pipeline itself, reusing Beam's overrides and its GroupByKey
translation: every PCollection gets its own bag (a ParDo's outputs are split by tag), every
leaf PCollection and every step's counters are computed in one `client.compute`, a ParDo's
partition runs `start_bundle`, `process`, `finish_bundle` with a Beam metrics container
installed and its outputs are taken after `finish_bundle`, bounded sources are split on the
client and read by the workers, side inputs are materialized once and broadcast, and set-up
DoFns are kept in a per-process pool and reused by later bundles (never two at once; no
`teardown`, which Dataflow does not promise either). Counters are reported as *attempted* values: Dask reruns the tasks of a lost worker,
so they may count some elements twice then; the shards do not depend on them.

Only the global window and the default trigger (all the batch job uses) are supported.
"""

from __future__ import annotations

import collections
import functools
import itertools
import logging
import math
import threading
import uuid
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics.execution import MetricKey, MetricResult
from apache_beam.metrics.metric import MetricResults
from apache_beam.metrics.metricbase import MetricName
from apache_beam.runners.dask import dask_runner as beam_dask
from apache_beam.runners.dask import overrides as beam_overrides
from apache_beam.runners.common import Receiver
from apache_beam.runners.dask import transform_evaluator as beam_translations
from apache_beam.runners.runner import PipelineResult, PipelineState
from apache_beam.transforms.window import GlobalWindows

DaskOptions = beam_dask.DaskOptions

_METRICS = "__mergedistill_dask_metrics__"   # the tag of a partition's counter values
# Bounded sources are split into about this many bundles (at least MIN_BUNDLE_BYTES each)
# unless --dask_npartitions says otherwise.
DEFAULT_SOURCE_BUNDLES = 16
MIN_BUNDLE_BYTES = 16 * 1024

_BUNDLES_RUN = collections.Counter()   # in this process: ParDo partitions run, by step


def bundles_run() -> dict[str, int]:
    """The ParDo partitions (bundles) this worker process has run, by step (tests, logs)."""
    return dict(_BUNDLES_RUN)


class _Collect(Receiver):
    """A Receiver that appends (tag, value) to a list (the partition's output)."""

    def __init__(self, tag, out: list):
        super().__init__()
        self._tag = tag
        self._out = out

    def receive(self, windowed_value):
        self._out.append((self._tag, windowed_value.value))


class _Receivers(dict):

    def __init__(self, out: list):
        super().__init__()
        self._out = out

    def __missing__(self, tag):
        receiver = self[tag] = _Collect(tag, self._out)
        return receiver


class _GlobalWindowValues:
    """A side input's values as the windowed values SideInputMap iterates over."""

    def __init__(self, values):
        self._values = values

    def __iter__(self):
        for value in self._values:
            yield GlobalWindows.windowed_value(value)


def _counter_values(container) -> dict:
    updates = container.get_cumulative()
    return {(key.step, key.metric.namespace, key.metric.name): value
            for key, value in updates.counters.items()}


def _in_metrics_scope(label: str, work):
    """Runs work() with a Beam metrics container installed; (work's result, counter values)."""
    from apache_beam.metrics.execution import MetricsContainer  # pylint: disable=import-outside-toplevel
    from apache_beam.runners.worker import statesampler  # pylint: disable=import-outside-toplevel
    from apache_beam.utils import counters  # pylint: disable=import-outside-toplevel

    container = MetricsContainer(label)
    previous = statesampler.get_current_tracker()
    sampler = statesampler.StateSampler("", counters.CounterFactory())
    statesampler.set_current_tracker(sampler)
    try:
        with sampler.scoped_state(label, "process", metrics_container=container):
            result = work()
    finally:
        statesampler.set_current_tracker(previous)
    return result, _counter_values(container)


class _DoFnPool:
    """Set-up DoFns of this worker process, by ParDo token: a bundle takes one (or sets up
    `fn`, its own unpickled copy, when none is free) and gives it back after finish_bundle,
    so a DoFn is never used by two bundles at once and is set up once per concurrent bundle,
    whichever threads Dask runs the bundles in."""

    def __init__(self):
        self._lock = threading.Lock()
        self._free: dict[str, list] = collections.defaultdict(list)

    def take(self, token: str, fn):
        with self._lock:
            if self._free[token]:
                return self._free[token].pop()
        fn.setup()
        return fn

    def give_back(self, token: str, fn) -> None:
        with self._lock:
            self._free[token].append(fn)


_DOFNS = _DoFnPool()


def _run_dofn_partition(items, token, label, fn, args, kwargs, window_fn, side_specs,
                        *side_values):
    """One bag partition = one bundle: start_bundle, process every element, finish_bundle.
    Returns [(tag, value)] with the outputs of all three (tag None: the main output), then
    (_METRICS, counter values)."""
    from apache_beam.runners.common import (  # pylint: disable=import-outside-toplevel
        DoFnContext, DoFnInvoker, DoFnSignature, _OutputHandler)
    from apache_beam.transforms.sideinputs import SideInputMap  # pylint: disable=import-outside-toplevel

    out: list = []
    receivers = _Receivers(out)
    side_inputs = [SideInputMap(view_class, view_options, _GlobalWindowValues(values))
                   for (view_class, view_options), values in zip(side_specs, side_values)]

    def work():
        do_fn = _DOFNS.take(token, fn)
        invoker = DoFnInvoker.create_invoker(
            DoFnSignature(do_fn),
            _OutputHandler(window_fn=window_fn, main_receivers=receivers[None],
                           tagged_receivers=receivers, per_element_output_counter=None,
                           output_batch_converter=None, process_yields_batches=False,
                           process_batch_yields_elements=False),
            context=DoFnContext(label, state=None), side_inputs=side_inputs,
            input_args=list(args), input_kwargs=dict(kwargs), user_state_context=None,
            bundle_finalizer_param=beam.DoFn.BundleFinalizerParam())
        invoker.invoke_start_bundle()
        for item in items:
            invoker.invoke_process(GlobalWindows.windowed_value(item))
        invoker.invoke_finish_bundle()
        _DOFNS.give_back(token, do_fn)   # not after a failure: the DoFn may be half-way

    _, counter_values = _in_metrics_scope(label, work)
    _BUNDLES_RUN[label] += 1
    out.append((_METRICS, counter_values))
    return out


def _read_bundles(bundles, label):
    """Reads source bundles (split on the client); [(None, record)...] + counter values."""

    def work():
        records = []
        for bundle in bundles:
            tracker = bundle.source.get_range_tracker(bundle.start_position,
                                                      bundle.stop_position)
            records.extend((None, r) for r in bundle.source.read(tracker))
        return records

    records, counter_values = _in_metrics_scope(label, work)
    records.append((_METRICS, counter_values))
    return records


def _has_tag(tag, pair) -> bool:
    return pair[0] == tag


def _value(pair):
    return pair[1]


def _concat(lists):
    return list(itertools.chain.from_iterable(lists))


def _count_partition(partition) -> list:
    return [sum(1 for _ in partition)]


def _sum_counters(partials) -> dict:
    total: dict = collections.defaultdict(int)
    for partial in partials:
        for key, value in partial.items():
            total[key] += value
    return dict(total)


def _merge_counter_partitions(partition) -> dict:
    return _sum_counters(list(partition))


class _Translator(beam.pipeline.PipelineVisitor):
    """Every PCollection → a dask bag of its values; every step → a bag of counter dicts."""

    def __init__(self, bag_kwargs: dict):
        self.bags: dict[pvalue.PCollection, Any] = {}
        self.metric_bags: list = []
        self.consumed: set = set()
        self._bag_kwargs = bag_kwargs

    def visit_transform(self, node) -> None:
        from dask import bag as db  # pylint: disable=import-outside-toplevel

        transform = node.transform
        inputs = [i for i in node.main_inputs.values() if isinstance(i, pvalue.PCollection)]
        self.consumed.update(inputs)
        self.consumed.update(si.pvalue for si in node.side_inputs)
        outputs = dict(node.outputs)
        if isinstance(transform, beam_overrides._Create):  # pylint: disable=protected-access
            op = beam_translations.Create(node, bag_kwargs=dict(self._bag_kwargs))
            self._single(outputs, op.apply(None))
        elif isinstance(transform, beam.Impulse):
            self._single(outputs, db.from_sequence([b""], npartitions=1))
        elif isinstance(transform, beam_overrides._Read):  # pylint: disable=protected-access
            self._split_by_tag(node, outputs, self._read(node))
        elif isinstance(transform, beam_overrides._Flatten):  # pylint: disable=protected-access
            bags = [self.bags[i] for i in inputs]
            self._single(outputs, db.concat(bags) if bags else db.from_sequence(
                [], npartitions=1))
        elif isinstance(transform, beam_overrides._GroupByKeyOnly):  # pylint: disable=protected-access
            op = beam_translations.GroupByKey(node, bag_kwargs=dict(self._bag_kwargs))
            self._single(outputs, op.apply(self.bags[inputs[0]]))
        elif isinstance(transform, (beam_overrides._GroupAlsoByWindow,  # pylint: disable=protected-access
                                    beam_overrides._Reshuffle)):  # pylint: disable=protected-access
            # GroupByKeyOnly already gave (key, [values]) in the global window; Reshuffle is
            # a redistribution only.
            self._single(outputs, self.bags[inputs[0]])
        elif isinstance(transform, beam.ParDo):
            self._split_by_tag(node, outputs, self._pardo(node, inputs))
        else:
            raise NotImplementedError(
                f"DaskRunner (beam_jobs.dask_runner): no translation for "
                f"{type(transform).__name__} at step {node.full_label!r}")

    def _single(self, outputs, bag) -> None:
        for output in outputs.values():
            self.bags[output] = bag

    def _split_by_tag(self, node, outputs, tagged_bag) -> None:
        main = getattr(node.transform, "output_tags", None)
        for tag, output in outputs.items():
            # The main output is received with tag None (its key here is None or the
            # with_outputs(main=...) name, which the DoFn never yields as a TaggedOutput).
            wanted = tag if tag is not None and main and tag in main else None
            self.bags[output] = tagged_bag.filter(functools.partial(_has_tag, wanted)).map(_value)
        self.metric_bags.append(tagged_bag.filter(functools.partial(_has_tag, _METRICS)).map(_value))

    def _read(self, node):
        from dask import bag as db  # pylint: disable=import-outside-toplevel

        source = node.transform.source
        wanted = self._bag_kwargs.get("npartitions") or DEFAULT_SOURCE_BUNDLES
        size = source.estimate_size() or 0
        desired = max(MIN_BUNDLE_BYTES, math.ceil(size / wanted)) if size else None
        bundles = list(source.split(desired_bundle_size=desired) if desired else
                       source.split(desired_bundle_size=MIN_BUNDLE_BYTES))
        if not bundles:
            return db.from_sequence([], npartitions=1)
        return db.from_sequence(bundles, npartitions=len(bundles)).map_partitions(
            _read_bundles, node.full_label)

    def _pardo(self, node, inputs):
        transform = node.transform
        args, kwargs = transform.raw_side_inputs
        main_input = inputs[0]
        window_fn = main_input.windowing.windowfn if hasattr(main_input, "windowing") else None
        side_specs, side_items = [], []
        for side in node.side_inputs:
            side_specs.append((type(side), side._view_options()))  # pylint: disable=protected-access
            side_items.append(self.bags[side.pvalue].reduction(list, _concat))
        return self.bags[main_input].map_partitions(
            _run_dofn_partition, uuid.uuid4().hex, node.full_label, transform.fn, tuple(args),
            dict(kwargs), window_fn, side_specs, *side_items)

    def leaves(self) -> list:
        return [bag for pcoll, bag in self.bags.items() if pcoll not in self.consumed]


class DaskMetrics(MetricResults):
    """Counters summed over every partition of every step (attempted values only)."""

    def __init__(self, counters: dict):
        self._counters = dict(counters)

    def query(self, filter=None):  # pylint: disable=redefined-builtin
        results = []
        for (step, namespace, name), value in sorted(self._counters.items()):
            key = MetricKey(step, MetricName(namespace, name))
            if self.matches(filter, key):
                results.append(MetricResult(key, None, value))
        return {self.COUNTERS: results, self.DISTRIBUTIONS: [], self.GAUGES: [],
                self.STRINGSETS: [], self.BOUNDED_TRIES: []}


class DaskRunnerResult(PipelineResult):

    def __init__(self, client, futures):
        super().__init__(PipelineState.RUNNING)
        self._client = client
        self._futures = futures
        self._metrics = None

    def wait_until_finish(self, duration=None):
        if PipelineState.is_terminal(self._state):
            return self._state
        from dask import distributed  # pylint: disable=import-outside-toplevel

        try:
            if duration is not None:
                try:
                    distributed.wait(self._futures, timeout=duration / 1000)
                except TimeoutError:
                    return self._state
            counters, _ = self._client.gather(self._futures)
            self._metrics = DaskMetrics(counters)
            self._state = PipelineState.DONE
        except BaseException:
            self._state = PipelineState.FAILED
            raise
        finally:
            if PipelineState.is_terminal(self._state):
                # Closes the LocalCluster the runner started when no scheduler was given;
                # a scheduler at --dask_client_address keeps running.
                self._client.close()
        return self._state

    def cancel(self):
        self._client.cancel(self._futures)
        self._state = PipelineState.CANCELLED
        return self._state

    def metrics(self):
        if self._metrics is None:
            raise RuntimeError("the Dask job's counters are known when it has finished")
        return self._metrics


class DaskRunner(beam_dask.DaskRunner):
    """Beam's DaskRunner with the translation of this module (module docstring)."""

    def run_pipeline(self, pipeline, options):
        from dask import bag as db  # pylint: disable=import-outside-toplevel
        from dask import distributed  # pylint: disable=import-outside-toplevel

        dask_options = options.view_as(DaskOptions).get_all_options(
            drop_default=True, current_only=True)
        bag_kwargs = DaskOptions._extract_bag_kwargs(dask_options)  # pylint: disable=protected-access
        client = distributed.Client(**dask_options)
        logging.info("DaskRunner: scheduler %s, %d workers", client.scheduler.address,
                     len(client.scheduler_info().get("workers", {})))
        pipeline.replace_all(beam_overrides.dask_overrides())
        translator = _Translator(bag_kwargs)
        pipeline.visit(translator)
        counters = (db.concat(translator.metric_bags)
                    .reduction(_merge_counter_partitions, _sum_counters)
                    if translator.metric_bags else db.from_sequence([{}]).reduction(
                        _merge_counter_partitions, _sum_counters))
        # Every leaf PCollection computed (a count comes back, not the values).
        leaves = [bag.map_partitions(_count_partition) for bag in translator.leaves()]
        done = (db.concat(leaves) if leaves else db.from_sequence([0])).sum()
        futures = client.compute([counters, done])
        return DaskRunnerResult(client, futures)
