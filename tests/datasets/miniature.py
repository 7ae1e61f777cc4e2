"""Miniature copies of the released dataset layouts, for tests and one-iteration config runs.

Each ``write_<dataset>(root, ...)`` writes a few 32 px JPEG images and a few
Chinese captions under ``root`` in the layout the dataset is published in
(see docs/datasets.md), and returns ``{split: dataset kwargs}``: the keyword
arguments (``data_root``, ``ann_file``, ...) to pass to the matching loader,
without ``type`` and ``pipeline``. ``corrupt=True`` adds, to the training
split, a truncated JPEG, a record whose image file is missing and a record
with an empty caption; ``malformed=True`` appends a malformed line to the
training annotation file (find its number with :func:`find_line` and
``MALFORMED_MARKER``).

Every writer is deterministic: the same arguments write the same bytes.
"""
from __future__ import annotations

import base64
import csv
import io
import json
import tarfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np
from PIL import Image

IMAGE_SIZE = 32
MALFORMED_MARKER = 'MALFORMED'
COLOURS = ('红色', '绿色', '蓝色', '黄色', '紫色', '白色', '黑色', '橙色')
THINGS = ('小狗', '汽车', '房子', '小猫', '杯子', '花朵', '帽子', '书包')
PLACES = ('草地上', '街道上', '桌子上', '雪地里', '海边', '树下')

Kwargs = Dict[str, dict]


# ----------------------------------------------------------------- building blocks
def jpeg_bytes(index: int, size: int = IMAGE_SIZE) -> bytes:
    """A small JPEG whose colour pattern depends on ``index`` (deterministic)."""
    rng = np.random.default_rng(index)
    base = rng.integers(0, 256, size=3)
    img = np.empty((size, size, 3), dtype=np.uint8)
    img[:] = base
    img[: size // 2, : size // 2] = 255 - base  # a quadrant so images differ in structure
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format='JPEG', quality=95)
    return buf.getvalue()


def truncated_jpeg_bytes(index: int = 999) -> bytes:
    """The first half of a JPEG: PIL opens the header but cannot decode it."""
    data = jpeg_bytes(index)
    return data[: len(data) // 2]


def write_image(path: Path, index: int, truncated: bool = False) -> Path:
    """Write the miniature JPEG ``index`` (or a truncated one) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(truncated_jpeg_bytes(index) if truncated else jpeg_bytes(index))
    return path


def caption(index: int, variant: int = 0) -> str:
    """A short Chinese caption, distinct for every (index, variant) within a few hundred."""
    colour = COLOURS[index % len(COLOURS)]
    thing = THINGS[(index // len(COLOURS)) % len(THINGS)]
    place = PLACES[variant % len(PLACES)]
    return f'{place}有一只{colour}的{thing}（{index}-{variant}）'


def write_text(path: Path, lines: Iterable[str]) -> Path:
    """Write ``lines`` (each without its newline) as UTF-8."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(''.join(line + '\n' for line in lines), encoding='utf-8')
    return path


def write_jsonl(path: Path, rows: Iterable[object]) -> Path:
    """Write JSON-lines; ``str`` rows are written verbatim (for malformed lines)."""
    return write_text(path, (row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)
                             for row in rows))


def find_line(path: Path, marker: str = MALFORMED_MARKER) -> int:
    """1-based number of the first line of ``path`` containing ``marker``."""
    with open(path, encoding='utf-8') as f:
        for lineno, line in enumerate(f, start=1):
            if marker in line:
                return lineno
    raise ValueError(f'{marker!r} not in {path}')


# ----------------------------------------------------------------- Zero corpus
ZERO_FIELDS = ('image_path', 'title', 'content', 'query', 'show', 'click', 'url')


def zero_rows(num_images: int, corrupt: bool) -> List[dict]:
    """Rows of the Zero corpus table (one per image), including corrupt cases."""
    rows = []
    for i in range(num_images):
        rows.append({
            'image_path': f'{i:06d}.jpg',
            'title': f'标题{i}：{caption(i, 0)}',
            'content': f'正文{i}：{caption(i, 1)}，图片周围的详细描述',
            'query': f'查询{i}',
            'show': 1000 + i, 'click': 10 + i, 'url': f'https://example.com/{i}.jpg',
        })
    if num_images > 1:
        rows[1]['title'] = ''  # one empty text: never chosen, record kept
    if corrupt:
        rows.append({'image_path': 'truncated.jpg', 'title': '截断的图片', 'content': '截断', 'query': '坏图',
                     'show': 1, 'click': 0, 'url': ''})
        rows.append({'image_path': 'missing.jpg', 'title': '不存在的图片', 'content': '缺失', 'query': '缺图',
                     'show': 1, 'click': 0, 'url': ''})
        rows.append({'image_path': f'{0:06d}.jpg', 'title': ' ', 'content': '', 'query': '',
                     'show': 1, 'click': 0, 'url': ''})  # all three texts empty: dropped
    return rows


def write_zero_corpus(root: Path, num_images: int = 6, fmt: str = 'jsonl', corrupt: bool = False,
                      malformed: bool = False) -> Kwargs:
    """Zero pre-training corpus: ``train.<fmt>`` table + ``images/`` folder.

    ``fmt`` is 'jsonl', 'csv' or 'parquet'. Image ``i`` is ``images/00000i.jpg``;
    record 1 has an empty title. ``malformed`` (jsonl and csv only) appends a
    line that is not a valid record.
    """
    root = Path(root)
    for i in range(num_images):
        write_image(root / 'images' / f'{i:06d}.jpg', i)
    rows = zero_rows(num_images, corrupt)
    if corrupt:
        write_image(root / 'images' / 'truncated.jpg', 0, truncated=True)
    ann = root / f'train.{fmt}'
    if fmt == 'jsonl':
        lines: List[object] = list(rows)
        if malformed:
            lines.append('{"image_path": "x.jpg", "title": ' + f'"{MALFORMED_MARKER}"')
        write_jsonl(ann, lines)
    elif fmt == 'csv':
        with open(ann, 'w', encoding='utf-8', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=ZERO_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
            if malformed:  # one field too many
                f.write(f'x.jpg,{MALFORMED_MARKER},b,c,1,2,u,extra\n')
    elif fmt == 'parquet':
        import pyarrow as pa
        import pyarrow.parquet as pq
        pq.write_table(pa.Table.from_pylist(rows), ann)
    else:
        raise ValueError(f'unknown format {fmt!r}')
    return {'train': dict(data_root=str(root), ann_file=ann.name, data_prefix=dict(img_path='images'))}


def write_zero_shards(root: Path, num_shards: int = 4, samples_per_shard: int = 3,
                      corrupt: bool = False) -> Kwargs:
    """Zero corpus as img2dataset webdataset shards: ``shards/0000k.tar``.

    Each shard holds ``<key>.jpg``, ``<key>.txt`` (the title, img2dataset's
    caption column) and ``<key>.json`` (key, url, status, title, content, query,
    show, click) per sample, key = ``f'{shard:05d}{position:04d}'``.
    ``corrupt`` adds to shard 0 a truncated JPEG, a sample whose JSON does not
    parse and a sample without an image, each at the end of the shard.
    """
    root = Path(root)
    (root / 'shards').mkdir(parents=True, exist_ok=True)
    for shard in range(num_shards):
        members = []
        for pos in range(samples_per_shard):
            index = shard * samples_per_shard + pos
            key = f'{shard:05d}{pos:04d}'
            meta = {'key': key, 'url': f'https://example.com/{index}.jpg', 'status': 'success',
                    'title': f'标题{index}', 'content': f'正文{index}：{caption(index, 1)}',
                    'query': f'查询{index}', 'show': 100 + index, 'click': index}
            members += [(f'{key}.jpg', jpeg_bytes(index)), (f'{key}.txt', meta['title'].encode()),
                        (f'{key}.json', json.dumps(meta, ensure_ascii=False).encode())]
        if corrupt and shard == 0:
            base = samples_per_shard
            bad = {'title': '坏图', 'content': '', 'query': ''}
            members += [(f'{shard:05d}{base:04d}.jpg', truncated_jpeg_bytes()),
                        (f'{shard:05d}{base:04d}.json', json.dumps(bad).encode()),
                        (f'{shard:05d}{base + 1:04d}.jpg', jpeg_bytes(500)),
                        (f'{shard:05d}{base + 1:04d}.json', b'{"title": '),
                        (f'{shard:05d}{base + 2:04d}.json', json.dumps(bad).encode())]
        with tarfile.open(root / 'shards' / f'{shard:05d}.tar', 'w') as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mtime = 0
                tar.addfile(info, io.BytesIO(data))
    pattern = str(root / 'shards' / f'{{00000..{num_shards - 1:05d}}}.tar')
    return {'train': dict(shards=pattern)}


# ----------------------------------------------------------------- ICR / IQR / ICM / IQM
def write_zero_downstream(root: Path, task: str = 'icr', num_images: int = 4, corrupt: bool = False,
                          malformed: bool = False) -> Kwargs:
    """ICR / IQR (retrieval) or ICM / IQM (matching) as the official repo reads them.

    ``<TASK>/{train,val,test}/{long|short}_{itr|itm}_<split>.json`` (JSON-lines
    of ``image_path``, ``text`` and, for matching, ``label``) and the shared
    image folder ``IQR_IQM_ICR_ICM_images/``. ``image_path`` carries a directory
    that the official code drops (it keeps the file name only).
    """
    root = Path(root)
    task = task.lower()
    prefix = {'icr': 'long_itr', 'iqr': 'short_itr', 'icm': 'long_itm', 'iqm': 'short_itm'}[task]
    matching = task in ('icm', 'iqm')
    image_dir = 'IQR_IQM_ICR_ICM_images'
    out: Kwargs = {}
    for s, split in enumerate(('train', 'val', 'test')):
        rows: List[object] = []
        for i in range(num_images):
            index = 100 * s + i
            name = f'{task}_{index:05d}.jpg'
            write_image(root / image_dir / name, index)
            text = caption(index) if task in ('icr', 'icm') else f'{COLOURS[index % 8]}{THINGS[i % 8]}'
            row = {'image_path': f'/official/images/{name}', 'text': text}
            if matching:
                row['label'] = (i + s) % 2
            rows.append(row)
        if corrupt and split == 'train':
            write_image(root / image_dir / f'{task}_bad.jpg', 0, truncated=True)
            extra = [{'image_path': f'images/{task}_bad.jpg', 'text': '截断的图片'},
                     {'image_path': f'images/{task}_missing.jpg', 'text': '不存在的图片'},
                     {'image_path': f'images/{task}_00000.jpg', 'text': '  '}]
            for row in extra:
                if matching:
                    row['label'] = 1
            rows += extra
        if malformed and split == 'train':
            rows.append({'image_path': f'images/{task}_00000.jpg', 'text': MALFORMED_MARKER, 'label': 'yes'}
                        if matching else '{"image_path": "' + MALFORMED_MARKER)
        ann = f'{task.upper()}/{split}/{prefix}_{split}.json'
        write_jsonl(root / ann, rows)
        out[split] = dict(data_root=str(root), ann_file=ann, data_prefix=dict(img_path=image_dir),
                          strip_image_dirs=True)
    return out


# ----------------------------------------------------------------- Flickr30k-CN / CNA
FLICKR_IMAGES = 'flickr30k-images'


def _flickr_ids(split_index: int, num_images: int) -> List[str]:
    return [str(1000092795 + 1000 * split_index + i) for i in range(num_images)]


def write_flickr30k_cn(root: Path, num_images: int = 3, captions_per_image: int = 5,
                       corrupt: bool = False, malformed: bool = False,
                       gallery_only: int = 1) -> Kwargs:
    """Flickr30k-CN as released (VisualSearch collections).

    ``flickr30kzhbbosontrain`` / ``flickr30kzhbbosonval`` (machine translated)
    and ``flickr30kzhmbosontest`` (human translated) each hold
    ``ImageSets/<name>.txt`` (image ids) and ``TextData/seg.<name>.caption.txt``
    (``<id>#zh?#<n> <word-segmented caption>``); images are
    ``flickr30k-images/<id>.jpg``. The test image list has ``gallery_only``
    extra images without captions.
    """
    root = Path(root)
    out: Kwargs = {}
    names = {'train': 'flickr30kzhbbosontrain', 'val': 'flickr30kzhbbosonval',
             'test': 'flickr30kzhmbosontest'}
    for s, (split, name) in enumerate(names.items()):
        ids = _flickr_ids(s, num_images)
        extra_ids = [str(2000000000 + i) for i in range(gallery_only)] if split == 'test' else []
        for k, image_id in enumerate(ids + extra_ids):
            write_image(root / FLICKR_IMAGES / f'{image_id}.jpg', 10 * s + k)
        lang = 'zhm' if split == 'test' else 'zhb'
        lines = []
        for k, image_id in enumerate(ids):
            for n in range(captions_per_image):
                words = ' '.join([PLACES[n % 6], '有', '一只', COLOURS[k % 8], '的', THINGS[(k + n) % 8],
                                  f'{split}{k}{n}'])
                lines.append(f'{image_id}#{lang}#{n} {words}')
        if corrupt and split == 'train':
            bad, gone = '1000000001', '1000000002'
            write_image(root / FLICKR_IMAGES / f'{bad}.jpg', 0, truncated=True)
            ids += [bad, gone]
            lines += [f'{bad}#zhb#0 截断 的 图片', f'{gone}#zhb#0 不存在 的 图片', f'{ids[0]}#zhb#9 ']
        if malformed and split == 'train':
            lines.append(f'{MALFORMED_MARKER}-no-caption-id')
        write_text(root / name / 'ImageSets' / f'{name}.txt', ids + extra_ids)
        write_text(root / name / 'TextData' / f'seg.{name}.caption.txt', lines)
        out[split] = dict(data_root=str(root), ann_file=f'{name}/TextData/seg.{name}.caption.txt',
                          image_list=f'{name}/ImageSets/{name}.txt',
                          data_prefix=dict(img_path=FLICKR_IMAGES))
    return out


def write_flickr30k_cna(root: Path, num_images: int = 3, captions_per_image: int = 5,
                        corrupt: bool = False, malformed: bool = False) -> Kwargs:
    """Flickr30k-CNA as the official R2D2 code reads it.

    ``{train,val,test}/flickr30k_cna_<split>.txt`` with ``<id>#<n><TAB><caption>``
    lines and images ``flickr30k-images/<id>.jpg``.
    """
    root = Path(root)
    out: Kwargs = {}
    for s, split in enumerate(('train', 'val', 'test')):
        ids = _flickr_ids(s, num_images)
        lines = []
        for k, image_id in enumerate(ids):
            write_image(root / FLICKR_IMAGES / f'{image_id}.jpg', 10 * s + k)
            lines += [f'{image_id}#{n}\t{caption(10 * s + k, n)}' for n in range(captions_per_image)]
        if corrupt and split == 'train':
            write_image(root / FLICKR_IMAGES / '1000000001.jpg', 0, truncated=True)
            lines += ['1000000001#0\t截断的图片', '1000000002#0\t不存在的图片', f'{ids[0]}#9\t ']
        if malformed and split == 'train':
            lines.append(f'{ids[0]}#{MALFORMED_MARKER}')  # no tab, no caption
        ann = f'{split}/flickr30k_cna_{split}.txt'
        write_text(root / ann, lines)
        out[split] = dict(data_root=str(root), ann_file=ann, data_prefix=dict(img_path=FLICKR_IMAGES))
    return out


# ----------------------------------------------------------------- COCO-CN
def write_coco_cn(root: Path, num_images: int = 3, corrupt: bool = False,
                  malformed: bool = False) -> Kwargs:
    """COCO-CN as released (``coco-cn-version1805v1.1``) beside MS-COCO's image folders.

    Split lists ``coco-cn_{train,val,test}.txt`` of ``COCO_<part>2014_<12 digits>``
    ids, one caption file for every split (``imageid.human-written-caption.txt``,
    ``<id>#<n><TAB><caption>``; image 0 of each split gets two captions) and
    ``imageid.manually-translated-caption.txt`` for the test split. Images are
    ``train2014/<id>.jpg`` and ``val2014/<id>.jpg``.
    """
    root = Path(root)
    ann_dir = root / 'coco-cn-version1805v1.1'
    written, translated = [], []
    out: Kwargs = {}
    for s, split in enumerate(('train', 'val', 'test')):
        ids = []
        for i in range(num_images):
            part = 'train' if (i + s) % 2 == 0 else 'val'
            image_id = f'COCO_{part}2014_{100000 * (s + 1) + i:012d}'
            write_image(root / f'{part}2014' / f'{image_id}.jpg', 20 * s + i)
            ids.append(image_id)
            written.append(f'{image_id}#0\t{caption(20 * s + i)}')
            if i == 0:
                written.append(f'{image_id}#1\t{caption(20 * s + i, 1)}')
            if split == 'test':
                translated.append(f'{image_id}#0\t{caption(20 * s + i, 2)}')
        if corrupt and split == 'train':
            bad, gone = 'COCO_train2014_000000000001', 'COCO_val2014_000000000002'
            write_image(root / 'train2014' / f'{bad}.jpg', 0, truncated=True)
            ids += [bad, gone]
            written += [f'{bad}#0\t截断的图片', f'{gone}#0\t不存在的图片', f'{ids[0]}#5\t ']
        write_text(ann_dir / f'coco-cn_{split}.txt', ids)
        out[split] = dict(data_root=str(root),
                          ann_file='coco-cn-version1805v1.1/imageid.human-written-caption.txt',
                          split_file=f'coco-cn-version1805v1.1/coco-cn_{split}.txt')
    if malformed:
        written.append(f'COCO_train2014_{MALFORMED_MARKER}')
    write_text(ann_dir / 'imageid.human-written-caption.txt', written)
    write_text(ann_dir / 'imageid.manually-translated-caption.txt', translated)
    return out


# ----------------------------------------------------------------- AIC-ICC
def write_aic_icc(root: Path, num_images: int = 3, captions_per_image: int = 5,
                  corrupt: bool = False, malformed: bool = False) -> Kwargs:
    """AI Challenger image Chinese captioning as released.

    ``ai_challenger_caption_train_20170902/caption_train_annotations_20170902.json``
    (a JSON array of ``{"url", "image_id": "<sha1>.jpg", "caption": [5 captions]}``)
    with ``caption_train_images_20170902/``, and the same for validation
    (``..._validation_20170910``). ``malformed`` breaks the training entry
    holding ``MALFORMED`` (``caption`` becomes a string).
    """
    root = Path(root)
    dirs = {'train': ('ai_challenger_caption_train_20170902', 'caption_train_annotations_20170902.json',
                      'caption_train_images_20170902'),
            'val': ('ai_challenger_caption_validation_20170910',
                    'caption_validation_annotations_20170910.json', 'caption_validation_images_20170910')}
    out: Kwargs = {}
    for s, (split, (folder, ann, images)) in enumerate(dirs.items()):
        entries = []
        for i in range(num_images):
            name = f'{(s * 1000 + i) * 7919:040x}.jpg'
            write_image(root / folder / images / name, 30 * s + i)
            entries.append({'url': f'http://example.com/{name}', 'image_id': name,
                            'caption': [f'\n{caption(30 * s + i, n)}' for n in range(captions_per_image)]})
        if corrupt and split == 'train':
            write_image(root / folder / images / 'bad.jpg', 0, truncated=True)
            entries += [{'url': '', 'image_id': 'bad.jpg', 'caption': ['截断的图片']},
                        {'url': '', 'image_id': 'missing.jpg', 'caption': ['不存在的图片']}]
            entries[0]['caption'].append(' ')
        if malformed and split == 'train':
            entries.append({'url': '', 'image_id': f'{MALFORMED_MARKER}.jpg', 'caption': MALFORMED_MARKER})
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / ann).write_text(json.dumps(entries, ensure_ascii=False), encoding='utf-8')
        out[split] = dict(data_root=str(root), ann_file=f'{folder}/{ann}',
                          data_prefix=dict(img_path=f'{folder}/{images}'))
    return out


# ----------------------------------------------------------------- MUGE
def write_muge(root: Path, num_images: int = 5, corrupt: bool = False, malformed: bool = False,
               original_names: bool = False) -> Kwargs:
    """MUGE retrieval: ``<split>_imgs.tsv`` (``id<TAB>base64``) + ``<split>_texts.jsonl``.

    Chinese-CLIP's layout (``text_id``, ``text``, ``image_ids``), or with
    ``original_names`` the Tianchi release (``MR_<split>_imgs.tsv``,
    ``MR_<split>_queries.jsonl`` with ``query_id``, ``query_text``,
    ``item_ids``). Query 0 lists images 0 and 1; query k > 0 lists image k + 1;
    the last image of every split is listed by no query (gallery only).
    ``corrupt`` adds a truncated image, a query naming an id missing from the
    TSV and a query with empty text.
    """
    root = Path(root) / 'MUGE'
    root.mkdir(parents=True, exist_ok=True)
    keys = ('query_id', 'query_text', 'item_ids') if original_names else ('text_id', 'text', 'image_ids')
    out: Kwargs = {}
    for s, split in enumerate(('train', 'valid')):
        ids = [1000000 + 1000 * s + i for i in range(num_images)]
        tsv = [f'{image_id}\t{base64.b64encode(jpeg_bytes(40 * s + i)).decode()}'
               for i, image_id in enumerate(ids)]
        queries: List[object] = [{keys[0]: 8000 + 100 * s, keys[1]: f'{THINGS[s]}{COLOURS[0]}',
                                  keys[2]: [ids[0], ids[1]]}]
        for k in range(1, num_images - 2):
            queries.append({keys[0]: 8000 + 100 * s + k, keys[1]: f'{COLOURS[k]}{THINGS[k]}',
                            keys[2]: [ids[k + 1]]})
        if corrupt and split == 'train':
            bad = 1999999
            tsv.append(f'{bad}\t{base64.b64encode(truncated_jpeg_bytes()).decode()}')
            queries += [{keys[0]: 9001, keys[1]: '截断的图片', keys[2]: [bad]},
                        {keys[0]: 9002, keys[1]: '不存在的图片', keys[2]: [1999998]},
                        {keys[0]: 9003, keys[1]: ' ', keys[2]: [ids[0]]}]
        if malformed and split == 'train':
            queries.append({keys[0]: 9004, keys[1]: MALFORMED_MARKER, keys[2]: 'not-a-list'})
        prefix = f'MR_{split}' if original_names else split
        write_text(root / f'{prefix}_imgs.tsv', tsv)
        texts = f'{prefix}_queries.jsonl' if original_names else f'{prefix}_texts.jsonl'
        write_jsonl(root / texts, queries)
        out[split] = dict(data_root=str(root), ann_file=texts, img_file=f'{prefix}_imgs.tsv')
    return out


# ----------------------------------------------------------------- zero-shot classification
ZERO_SHOT_CLASSES = ('猫', '狗', '汽车')


def write_zero_shot(root: Path, images_per_class: int = 2, class_names: Sequence[str] = ZERO_SHOT_CLASSES,
                    corrupt: bool = False, mapping_file: bool = False,
                    templates: Optional[Sequence[str]] = None) -> Kwargs:
    """An ELEVATER-style zero-shot folder as Chinese-CLIP prepares it.

    ``test/000/*.jpg``, ``test/001/*.jpg`` ... and ``label_cn.txt`` (line k =
    Chinese name of folder k); with ``mapping_file`` the names file holds
    ``<folder><TAB><name>`` lines instead. ``templates`` writes
    ``templates.txt``. ``corrupt`` adds a truncated JPEG to class 0.
    """
    root = Path(root)
    for c in range(len(class_names)):
        for i in range(images_per_class):
            write_image(root / 'test' / f'{c:03d}' / f'image_{i:04d}.jpg', 50 + 10 * c + i)
    if corrupt:
        write_image(root / 'test' / '000' / 'image_bad.jpg', 0, truncated=True)
    (root / 'test' / '000' / 'notes.txt').write_text('not an image', encoding='utf-8')
    if mapping_file:
        write_text(root / 'label_cn.txt', [f'{c:03d}\t{name}' for c, name in enumerate(class_names)])
    else:
        write_text(root / 'label_cn.txt', class_names)
    kwargs = dict(data_root=str(root), data_prefix=dict(img_path='test'), class_file='label_cn.txt')
    if templates is not None:
        write_text(root / 'templates.txt', templates)
        kwargs['templates'] = 'templates.txt'
    return {'test': kwargs}
