"""Zero-shot image classification: an image folder per class, Chinese class names and prompts.

Layout (Chinese-CLIP's preparation of the ELEVATER sets)::

    <data_root>/label_cn.txt      line k = Chinese name of the k-th class folder
    <data_root>/test/000/*.jpg    one folder per class, sorted by name
    <data_root>/test/001/*.jpg

The class-name file may instead map folders explicitly, one
``<folder><TAB><name>`` per line. Prompts are templates with one ``{}``
(``'一张{}的照片。'``): the default list, a list in the config, or a file with
one template per line.
"""
from __future__ import annotations

import os
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence, Union

from r2d2lib.registry import DATASETS

from .annotation_files import iter_text_lines
from .base import SkipUnreadableDataset, annotation_error

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.gif', '.tif', '.tiff')
DEFAULT_TEMPLATES = (
    '{}。',
    '一张{}的照片。',
    '一张{}的图片。',
    '一张模糊的{}的照片。',
    '一张清晰的{}的照片。',
    '一张小的{}的照片。',
    '一张大的{}的照片。',
    '一张{}的特写照片。',
    '一张好看的{}的照片。',
    '一张{}的裁剪照片。',
    '这是一张{}的照片。',
    '{}的图像。',
)


def check_template(template: str, source: str, lineno: Optional[int]) -> str:
    """A prompt template must contain exactly one ``{}`` (and no other field)."""
    try:
        ok = template.count('{}') == 1 and template.format('x') is not None
    except (IndexError, KeyError, ValueError):
        ok = False
    if not ok:
        raise annotation_error(source, lineno, f'template {template!r} must contain exactly one "{{}}"')
    return template


@DATASETS.register_module()
class ZeroShotClassificationDataset(SkipUnreadableDataset):
    """Images of class folders for zero-shot classification with Chinese prompts.

    Records: ``img_path``, ``gt_label`` (index of the class folder in sorted
    order), ``class_dir``. ``metainfo``: ``classes`` (Chinese names, by label)
    and ``templates``. Unreadable images are skipped in training and an error
    in test mode (the default here), like every r2d2lib dataset.

    Args:
        class_file: Class names: one per line in folder order, or
            ``<folder><TAB><name>`` lines.
        templates: A list of templates, a file (one per line) or None for
            ``DEFAULT_TEMPLATES``.
        data_prefix: ``dict(img_path=<folder holding the class folders>)``.
    """

    def __init__(self, class_file: str, data_root: str = '',
                 templates: Union[None, str, Sequence[str]] = None, test_mode: bool = True,
                 pipeline: Sequence[Any] = (), **kwargs: Any) -> None:
        self.class_file = class_file
        self.template_source = templates
        super().__init__(ann_file='', data_root=data_root, test_mode=test_mode,
                         pipeline=list(pipeline), **kwargs)

    def _class_dirs(self) -> List[str]:
        root = self.data_prefix.get('img_path', '') or self.data_root
        if not osp.isdir(root):
            raise FileNotFoundError(f'image folder {root!r} does not exist')
        return sorted(d for d in os.listdir(root) if osp.isdir(osp.join(root, d)))

    def _read_class_names(self, class_dirs: List[str]) -> List[str]:
        """Chinese names by label; every folder needs one, every name a folder."""
        path = self.resolve(self.class_file)
        lines = list(iter_text_lines(path))
        mapped: Dict[str, str] = {}
        if lines and all('\t' in line for _, line in lines):
            for lineno, line in lines:
                folder, name = (part.strip() for part in line.split('\t', 1))
                if not name:
                    raise annotation_error(path, lineno, f'empty class name for folder {folder!r}')
                if folder not in class_dirs:
                    raise annotation_error(path, lineno, f'no class folder {folder!r} in the image folder')
                mapped[folder] = name
            missing = [d for d in class_dirs if d not in mapped]
            if missing:
                raise ValueError(f'{path}: no class name for folder(s) {missing[:10]}')
            return [mapped[d] for d in class_dirs]
        names = [line.strip() for _, line in lines]
        if len(names) != len(class_dirs):
            raise ValueError(f'{path}: {len(names)} class name(s) for {len(class_dirs)} class folder(s); '
                             'line k names the k-th folder in sorted order, or use "<folder><TAB><name>"')
        return names

    def _read_templates(self) -> List[str]:
        source = self.template_source
        if source is None:
            return list(DEFAULT_TEMPLATES)
        if isinstance(source, str):
            path = self.resolve(source)
            templates = [check_template(line.strip(), path, lineno) for lineno, line in iter_text_lines(path)]
        else:
            templates = [check_template(t, 'templates', None) for t in source]
        if not templates:
            raise ValueError(f'no prompt templates in {source!r}')
        return templates

    def load_data_list(self) -> List[dict]:
        """One record per image file of every class folder."""
        class_dirs = self._class_dirs()
        if not class_dirs:
            raise ValueError(f'no class folders in {self.data_prefix.get("img_path")!r}')
        classes = self._read_class_names(class_dirs)
        self._metainfo.update(classes=tuple(classes), templates=tuple(self._read_templates()),
                              class_dirs=tuple(class_dirs))
        data_list = []
        for label, class_dir in enumerate(class_dirs):
            folder = self.image_path(class_dir)
            for name in sorted(os.listdir(folder)):
                if osp.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                    data_list.append(dict(img_path=osp.join(folder, name), gt_label=label,
                                          class_dir=class_dir))
        return data_list
