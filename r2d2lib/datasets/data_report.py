"""The data report: what a run skipped or changed in its data, in one table per epoch.

Rows (:data:`CATEGORIES`): ``unreadable`` (an image that does not decode), ``missing`` (a listed
image that does not exist), ``too_large`` (an image over ``LoadImage(max_pixels=...)``),
``empty_caption`` (an empty or whitespace-only caption; named by file and line), ``corrupt`` (a
webdataset sample without image, JSON or text) and ``truncated`` (a caption longer than the
preprocessor's ``max_length`` tokens, cut). Each row has a count and the first
:data:`MAX_EXAMPLES` paths or ``file, line n`` places.

Where the rows come from:

* at construction, the dataset's :class:`DataReport` (``dataset.data_report``): empty captions
  and missing images dropped while the annotations were read;
* in training, a skipped image travels to the main process with the next sample the dataset
  returns (``data_skips`` in its data sample's metainfo), so skips inside DataLoader workers are
  counted too; an image is counted once per run however often it is drawn;
* truncations are counted by the data preprocessor (``num_truncated``, ``truncated_examples``).

:class:`DataReportHook` logs the table at the end of every training epoch and of the run (with
"N captions longer than max_length=L tokens were truncated" once, at the end) and writes it to
``<work_dir>/data_report.json``.
"""
from __future__ import annotations

import json
import os.path as osp
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from mmengine.dist import all_gather_object, get_dist_info, is_main_process
from mmengine.hooks import Hook

from r2d2lib.registry import HOOKS

CATEGORIES = ('unreadable', 'missing', 'too_large', 'empty_caption', 'corrupt', 'truncated')
#: places shown per row
MAX_EXAMPLES = 5
#: the metainfo key under which a data sample carries the skips made while fetching it
SKIPS_KEY = 'data_skips'
REPORT_FILE = 'data_report.json'

Event = Tuple[str, str, str]  # (category, where, reason)


class DataReport:
    """Counts and first places of every :data:`CATEGORIES` row.

    ``add(category, where)`` counts one item; items of the image rows (``unreadable``,
    ``missing``, ``too_large``) are counted once per distinct ``where``.
    """

    DISTINCT = ('unreadable', 'missing', 'too_large')

    def __init__(self) -> None:
        self.counts: Dict[str, int] = {c: 0 for c in CATEGORIES}
        self.examples: Dict[str, List[str]] = {c: [] for c in CATEGORIES}
        self._seen: Dict[str, set] = {c: set() for c in self.DISTINCT}

    def add(self, category: str, where: str, count: int = 1) -> bool:
        """Count ``count`` items at ``where``; False (not counted) for an image seen before."""
        if category not in self.counts:
            raise KeyError(f'unknown data report category {category!r}; one of {CATEGORIES}')
        if category in self._seen:
            if where in self._seen[category]:
                return False
            self._seen[category].add(where)
        self.counts[category] += count
        if len(self.examples[category]) < MAX_EXAMPLES:
            self.examples[category].append(str(where))
        return True

    def add_events(self, events: Iterable[Sequence[str]]) -> None:
        """Count ``(category, where, reason)`` events (the ``data_skips`` of data samples)."""
        for category, where, *_ in events:
            self.add(category, where)

    def merge(self, other: 'DataReport') -> None:
        """Add ``other``'s rows (image rows stay distinct where both saw the place)."""
        for category in CATEGORIES:
            if category in self._seen:
                for where in sorted(other._seen[category]):
                    self.add(category, where)
            else:
                self.counts[category] += other.counts[category]
                room = MAX_EXAMPLES - len(self.examples[category])
                self.examples[category] += other.examples[category][:max(room, 0)]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> Dict[str, Any]:
        """``{category: {count, examples}}`` (JSON-ready)."""
        return {c: dict(count=self.counts[c], examples=list(self.examples[c])) for c in CATEGORIES}

    def state(self) -> Dict[str, Any]:
        """Everything, for gathering across ranks (:meth:`from_state`)."""
        return dict(counts=dict(self.counts), examples={k: list(v) for k, v in self.examples.items()},
                    seen={k: sorted(v) for k, v in self._seen.items()})

    @classmethod
    def from_state(cls, state: Dict[str, Any]) -> 'DataReport':
        report = cls()
        report.counts.update(state['counts'])
        report.examples.update({k: list(v) for k, v in state['examples'].items()})
        report._seen.update({k: set(v) for k, v in state['seen'].items()})
        return report

    def table(self, title: str = 'data report') -> str:
        """The report as a fixed-width table: row, count, first places."""
        lines = [f'{title}:', f'  {"row":<14}{"count":>8}  first {MAX_EXAMPLES}']
        for category in CATEGORIES:
            examples = self.examples[category]
            shown = '; '.join(examples) if examples else '-'
            lines.append(f'  {category:<14}{self.counts[category]:>8}  {shown}')
        return '\n'.join(lines)


def attach_skips(data: Any, events: List[Event]) -> bool:
    """Put ``events`` into the metainfo of ``data['data_samples']``; False if there is none."""
    sample = data.get('data_samples') if isinstance(data, dict) else None
    if sample is None or not hasattr(sample, 'set_metainfo'):
        return False
    previous = list(sample.metainfo.get(SKIPS_KEY, ()))
    sample.set_metainfo({SKIPS_KEY: previous + [tuple(e) for e in events]})
    return True


def sample_skips(sample: Any) -> List[Event]:
    """The skip events a data sample carries (empty if none)."""
    metainfo = getattr(sample, 'metainfo', None)
    return list(metainfo.get(SKIPS_KEY, ())) if isinstance(metainfo, dict) else []


def dataset_reports(dataset: Any) -> List[DataReport]:
    """The construction-time reports of ``dataset`` and of the datasets it wraps."""
    reports, stack, seen = [], [dataset], set()
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        report = getattr(item, 'data_report', None)
        if isinstance(report, DataReport):
            reports.append(report)
        stack.extend(getattr(item, 'datasets', None) or [])
        stack.append(getattr(item, 'dataset', None))
    return reports


def _unwrap(model: Any) -> Any:
    return getattr(model, 'module', model)


@HOOKS.register_module()
class DataReportHook(Hook):
    """Log the data report (:mod:`r2d2lib.datasets.data_report`) after every training epoch.

    The table goes to the training log; ``<work_dir>/data_report.json`` holds the run's report
    (``epochs``: one entry per epoch, cumulative; ``total``: the last), rewritten every epoch.
    At the end of the run the truncation count is logged once. Ranks are gathered.
    """

    priority = 'LOW'

    def __init__(self) -> None:
        self.report = DataReport()
        self.epochs: List[Dict[str, Any]] = []
        self._truncated_start: Optional[int] = None

    def _preprocessor(self, runner) -> Any:
        return getattr(_unwrap(runner.model), 'data_preprocessor', None)

    def _truncation(self, runner) -> Tuple[int, List[str], Optional[int]]:
        pre = self._preprocessor(runner)
        if pre is None or not hasattr(pre, 'num_truncated'):
            return 0, [], None
        return int(pre.num_truncated), list(pre.truncated_examples), getattr(pre, 'max_length', None)

    def before_train(self, runner) -> None:
        for report in dataset_reports(runner.train_dataloader.dataset):
            self.report.merge(report)
        self._truncated_start = self._truncation(runner)[0]

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        samples = data_batch.get('data_samples') if isinstance(data_batch, dict) else None
        for sample in samples or ():
            self.report.add_events(sample_skips(sample))

    def _gathered(self, runner) -> DataReport:
        report = DataReport.from_state(self.report.state())
        count, examples, _ = self._truncation(runner)
        report.counts['truncated'] = count - (self._truncated_start or 0)
        report.examples['truncated'] = examples[:MAX_EXAMPLES]
        _, world_size = get_dist_info()
        if world_size > 1:
            states = all_gather_object(report.state())
            merged = DataReport.from_state(states[0])
            for state in states[1:]:
                merged.merge(DataReport.from_state(state))
            report = merged
        return report

    def after_train_epoch(self, runner) -> None:
        report = self._gathered(runner)
        if not is_main_process():
            return
        epoch = runner.epoch + 1  # mmengine counts the epoch after this hook
        runner.logger.info(report.table(f'data report after epoch {epoch}'))
        self.epochs.append(dict(epoch=epoch, iter=runner.iter + 1, **report.to_dict()))
        self._write(runner, report)

    def after_train(self, runner) -> None:
        report = self._gathered(runner)
        if not is_main_process():
            return
        if not self.epochs:  # iteration-based training: no epoch ended
            runner.logger.info(report.table('data report'))
        self._write(runner, report)
        _, _, max_length = self._truncation(runner)
        if report.counts['truncated']:
            runner.logger.info(f"{report.counts['truncated']} captions longer than max_length={max_length} "
                               'tokens were truncated')

    def _write(self, runner, report: DataReport) -> None:
        path = osp.join(runner.work_dir, REPORT_FILE)
        with open(path, 'w', encoding='utf-8') as f:
            json.dump(dict(epochs=self.epochs, total=report.to_dict()), f, indent=2, ensure_ascii=False)
