"""Zero corpus streamed from webdataset tar shards as img2dataset writes them.

A shard ``00000.tar`` holds, per sample, ``<key>.jpg`` (or png/webp),
``<key>.txt`` (img2dataset's caption column) and ``<key>.json`` (metadata:
``title``, ``content``, ``query``, ``show``, ``click``, ``url`` ... saved
with ``--save_additional_columns``). Members of a sample are consecutive in
the tar, as img2dataset and webdataset write them.

Shards are split across ranks and DataLoader workers: consumer ``c = rank *
num_workers + worker`` of ``C = world_size * num_workers`` reads shards ``c,
c + C, c + 2C, ...`` of the (per-epoch shuffled) shard list, so every sample
is read by exactly one consumer per pass and no listing of samples is held
in memory. ``image_idx = shard_index * SHARD_STRIDE + position`` (position of
the sample in its shard) is unique across ranks and stable across epochs.
"""
from __future__ import annotations

import json
import os.path as osp
import re
import tarfile
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
from mmengine.dataset import Compose
from mmengine.dist import get_dist_info
from torch.utils.data import IterableDataset, get_worker_info

from r2d2lib.io.images import UnreadableImageError
from r2d2lib.registry import DATASETS

from .base import MAX_LOGGED_PATHS, check_unicode, warn
from .data_report import Event, attach_skips
from .text_choice import SharedEpoch, choose_text
from .zero_corpus import TEXT_FIELDS, normalise_row

SHARD_STRIDE = 1_000_000  # more samples than any shard holds (img2dataset writes 10,000)
IMAGE_EXTENSIONS = ('jpg', 'jpeg', 'png', 'webp')
# data report row of each skip counter
_CATEGORIES = dict(num_corrupt_samples='corrupt', num_unreadable_images='unreadable',
                   num_empty_captions='empty_caption')
_RANGE = re.compile(r'\{(\d+)\.\.(\d+)\}')
_CHOICES = re.compile(r'\{([^{}]*,[^{}]*)\}')


def expand_braces(pattern: str) -> List[str]:
    """Expand ``{00000..00099}`` ranges (zero-padded like the first bound) and ``{a,b}`` lists."""
    matches = [m for m in (_RANGE.search(pattern), _CHOICES.search(pattern)) if m]
    if not matches:
        return [pattern]
    match = min(matches, key=lambda m: m.start())  # leftmost brace first: shard order as written
    if match.re is _RANGE:
        lo, hi = match.group(1), match.group(2)
        if int(hi) < int(lo):
            raise ValueError(f'empty range {match.group(0)} in {pattern!r}')
        values = [str(i).zfill(len(lo)) for i in range(int(lo), int(hi) + 1)]
    else:
        values = match.group(1).split(',')
    head, tail = pattern[:match.start()], pattern[match.end():]
    return [path for value in values for path in expand_braces(head + value + tail)]


def shard_list(shards: Union[str, Sequence[str]], data_root: str = '') -> List[str]:
    """The shard paths of a brace pattern, a ``::``-separated string or a list (joined to data_root)."""
    patterns = shards.split('::') if isinstance(shards, str) else list(shards)
    paths = [osp.join(data_root, p) if data_root and not osp.isabs(p) else p
             for pattern in patterns for p in expand_braces(pattern)]
    if not paths:
        raise ValueError(f'no shards in {shards!r}')
    return paths


def iter_tar_samples(path: str) -> Iterator[Tuple[str, Dict[str, bytes]]]:
    """Yield ``(key, {extension: bytes})`` of consecutive members sharing a key.

    The key is the member path up to the first dot of its file name. A tar
    that is cut short (a member shorter than its header says, or a size that
    is not a whole number of 512-byte blocks) raises ``tarfile.ReadError``
    after the complete samples.
    """
    key: Optional[str] = None
    group: Dict[str, bytes] = {}
    with tarfile.open(path, 'r|*') as tar:
        for member in tar:
            if not member.isfile():
                continue
            dirname, base = osp.split(member.name)
            stem, _, ext = base.partition('.')
            member_key = osp.join(dirname, stem)
            if member_key != key and key is not None:
                yield key, group
                group = {}
            key = member_key
            data = tar.extractfile(member)
            content = data.read() if data is not None else b''
            if len(content) != member.size:
                raise tarfile.ReadError(f'member {member.name} cut short ({len(content)} of '
                                        f'{member.size} bytes)')
            group[ext.lower()] = content
    if key is not None:
        yield key, group
    if osp.getsize(path) % tarfile.BLOCKSIZE:
        raise tarfile.ReadError(f'size is not a multiple of {tarfile.BLOCKSIZE} bytes: the file is cut '
                                'short')


@DATASETS.register_module()
class ZeroCorpusShardDataset(IterableDataset):
    """Zero corpus from img2dataset webdataset shards, as a torch IterableDataset.

    Yields the pipeline's output for records ``img_bytes`` (decoded by
    ``LoadImage``), ``img_path`` (``'<shard>:<key>'``), ``text`` (drawn as in
    ``ZeroCorpusDataset`` from ``(seed, epoch, image_idx)``; the ``.txt``
    caption when the json has no text), ``text_source``, ``image_idx`` =
    ``text_idx`` (unique, see the module docstring), ``key``, ``shard``,
    ``show``, ``click``, ``url``.

    Corrupt samples (json that does not parse, no image member, undecodable
    image, truncated tar) are skipped, counted per process
    (``num_corrupt_samples``, ``num_unreadable_images``, ``num_empty_captions``)
    and logged with ``<shard>:<key>``.

    Args:
        shards: Brace pattern (``'shards/{00000..00099}.tar'``), ``::``-separated
            patterns or a list of paths, relative to ``data_root``.
        pipeline: Transforms (start with ``LoadImage``).
        seed: Seed of the text draw and of the shard shuffle.
        repeat: Start again after the last shard (epoch + 1) instead of
            stopping; use with ``IterBasedTrainLoop``.
        shuffle_shards: Shuffle the shard order each epoch (same order on
            every rank, from ``seed`` and the epoch).
        rank, world_size: Override of mmengine's ``get_dist_info()`` (read
            at construction, in the main process).
        num_samples: Samples in one pass over all shards, for ``len()``
            (default ``len(shards) * samples_per_shard``). The length is nominal:
            mmengine's LoggerHook needs one, ``IterBasedTrainLoop`` stops on
            ``max_iters`` whatever it says.
        samples_per_shard: Shard size assumed when ``num_samples`` is not
            given (img2dataset writes 10,000).
    """

    def __init__(self, shards: Union[str, Sequence[str]], pipeline: Sequence[Any] = (),
                 data_root: str = '', seed: int = 0, text_fields: Sequence[str] = TEXT_FIELDS,
                 repeat: bool = True, shuffle_shards: bool = True, test_mode: bool = False,
                 rank: Optional[int] = None, world_size: Optional[int] = None,
                 num_samples: Optional[int] = None, samples_per_shard: int = 10_000,
                 metainfo: Optional[dict] = None) -> None:
        super().__init__()
        self.shards = shard_list(shards, data_root)
        self.pipeline = Compose(list(pipeline))
        self.seed = int(seed)
        self.text_fields = tuple(text_fields)
        self.repeat = repeat
        self.shuffle_shards = shuffle_shards
        self.test_mode = test_mode
        dist_rank, dist_world = get_dist_info()
        self.rank = dist_rank if rank is None else rank
        self.world_size = dist_world if world_size is None else world_size
        self.num_samples = len(self.shards) * samples_per_shard if num_samples is None else num_samples
        self._epoch = SharedEpoch()
        self._metainfo = dict(metainfo or {}, num_shards=len(self.shards))
        self.num_corrupt_samples = 0
        self.num_unreadable_images = 0
        self.num_empty_captions = 0
        self._pending_skips: List[Event] = []

    @property
    def metainfo(self) -> dict:
        """``num_shards`` plus any ``metainfo`` given."""
        return dict(self._metainfo)

    def __len__(self) -> int:
        """Nominal samples per rank in one pass (``ceil(num_samples / world_size)``)."""
        return -(-self.num_samples // self.world_size)

    @property
    def epoch(self) -> int:
        """The epoch of the next pass."""
        return self._epoch.get()

    def set_epoch(self, epoch: int) -> None:
        """Start the next pass at ``epoch`` (shared with DataLoader workers)."""
        self._epoch.set(epoch)

    def shards_for(self, epoch: int, consumer: int, num_consumers: int) -> List[Tuple[int, str]]:
        """``(shard_index, path)`` read by ``consumer`` in ``epoch``."""
        order = np.arange(len(self.shards))
        if self.shuffle_shards:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.shards))
        return [(int(i), self.shards[i]) for i in order[consumer::num_consumers]]

    def __iter__(self) -> Iterator[Any]:
        """This consumer's samples; the skips made while reading ride with them (``data_skips``).

        One sample is held back until the next is read, so that the skips after the last
        sample of this consumer travel too (with that last sample).
        """
        held = None
        for sample in self._iter_samples():
            if held is not None:
                yield self._with_skips(held)
            held = sample
        if held is not None:
            yield self._with_skips(held)

    def _with_skips(self, sample: Any) -> Any:
        if self._pending_skips and attach_skips(sample, self._pending_skips):
            self._pending_skips = []
        return sample

    def _iter_samples(self) -> Iterator[Any]:
        worker = get_worker_info()
        num_workers, worker_id = (1, 0) if worker is None else (worker.num_workers, worker.id)
        consumers = self.world_size * num_workers
        consumer = self.rank * num_workers + worker_id
        if consumers > len(self.shards) and consumer == 0:
            warn(f'{len(self.shards)} shard(s) for {consumers} consumers (ranks x workers): '
                 f'{consumers - len(self.shards)} of them read nothing')
        if consumer >= len(self.shards):
            return  # no shard for this consumer: end at once, the DataLoader skips it
        epoch = self.epoch
        while True:
            produced = 0
            for shard_index, path in self.shards_for(epoch, consumer, consumers):
                for sample in self._iter_shard(shard_index, path, epoch):
                    produced += 1
                    yield sample
            if not self.repeat:
                return
            if not produced:  # every shard of this consumer is unusable: stop instead of spinning
                warn(f'consumer {consumer} (rank {self.rank}) read no usable sample in a whole pass '
                     'over its shards; it stops')
                return
            epoch += 1

    def _skip(self, counter: str, where: str, reason: str, category: Optional[str] = None) -> None:
        """Count and log one skipped sample (every one up to a limit, then every 1000th)."""
        setattr(self, counter, getattr(self, counter) + 1)
        self._pending_skips.append((category or _CATEGORIES[counter], where, reason))
        total = self.num_corrupt_samples + self.num_unreadable_images + self.num_empty_captions
        if total <= MAX_LOGGED_PATHS or total % 1000 == 0:
            warn(f'skipping {where}: {reason} ({self.num_corrupt_samples} corrupt, '
                 f'{self.num_unreadable_images} unreadable, {self.num_empty_captions} without text '
                 'so far in this process)')

    def _iter_shard(self, shard_index: int, path: str, epoch: int) -> Iterator[Any]:
        position = -1
        try:
            for position, (key, members) in enumerate(iter_tar_samples(path)):
                if position >= SHARD_STRIDE:
                    raise ValueError(f'{path}: more than {SHARD_STRIDE} samples in one shard')
                sample = self._record(shard_index, path, position, key, members, epoch)
                if sample is not None:
                    yield sample
        except (tarfile.TarError, OSError, EOFError) as err:
            self._skip('num_corrupt_samples', path, f'unreadable tar after sample {position} '
                                                    f'({type(err).__name__}: {err}); rest of shard skipped')

    def _record(self, shard_index: int, path: str, position: int, key: str,
                members: Dict[str, bytes], epoch: int) -> Any:
        where = f'{path}:{key}'
        image_ext = next((e for e in IMAGE_EXTENSIONS if e in members), None)
        if image_ext is None:
            self._skip('num_corrupt_samples', where, 'no image member')
            return None
        meta: Dict[str, Any] = {}
        if 'json' in members:
            try:
                meta = json.loads(members['json'].decode('utf-8'))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                self._skip('num_corrupt_samples', where + '.json', f'invalid JSON ({err})')
                return None
            if not isinstance(meta, dict):
                self._skip('num_corrupt_samples', where + '.json', 'not a JSON object')
                return None
        try:
            entry = normalise_row(meta, where + '.json', None, require_image=False)
            for text in entry['texts']:
                check_unicode(text, where + '.json', None)
        except ValueError as err:
            self._skip('num_corrupt_samples', where, str(err))
            return None
        keep = [i for i, s in enumerate(entry['text_sources']) if s in self.text_fields]
        texts = [entry['texts'][i] for i in keep]
        sources = [entry['text_sources'][i] for i in keep]
        caption = members.get('txt', b'').decode('utf-8', 'replace').strip()
        if not texts and caption:
            texts, sources = [caption], ['txt']
        if not texts:
            self._skip('num_empty_captions', where, 'no non-empty text')
            return None
        image_idx = shard_index * SHARD_STRIDE + position
        choice = choose_text(self.seed, epoch, image_idx, len(texts))
        record = dict(img_bytes=members[image_ext], img_path=where, text=texts[choice],
                      text_source=sources[choice], image_idx=image_idx, text_idx=image_idx,
                      key=osp.basename(key), shard=path, show=entry['show'], click=entry['click'],
                      url=entry['url'])
        try:
            return self.pipeline(record)
        except UnreadableImageError as err:
            if self.test_mode:
                raise
            self._skip('num_unreadable_images', err.path, err.reason, err.category)
            return None
