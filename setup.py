"""Packaging of r2d2lib."""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r"__version__ = '([^']+)'",
                    (HERE / 'r2d2lib' / 'version.py').read_text()).group(1)

setup(
    name='r2d2lib',
    version=VERSION,
    description='R2D2 and friends: Chinese vision-language pre-training in the OpenMMLab style',
    long_description=(HERE / 'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.10',
    packages=find_packages(include=['r2d2lib', 'r2d2lib.*']),
    install_requires=[
        'torch>=2.6',  # torch.serialization.safe_globals; weights_only loading
        'torchvision',
        'numpy>=2.0',
        'transformers>=4.56',  # from_pretrained(dtype=...)
        'timm>=0.9',
        'mmengine>=0.10,<0.11',
        'mmcv-lite>=2.0',
        'mmpretrain>=1.2',
        'safetensors',
        'huggingface_hub',
        'pillow',
        'tqdm',
        'rich',
        'diffusers>=0.30',  # UNet2DConditionModel, DDPM / DDIM / DPM-Solver, AutoencoderKL (text-to-image)
    ],
    extras_require={
        'data': ['pyarrow'],  # parquet annotations of the Zero corpus
        'index': ['faiss-cpu'],  # tools/build_index.py, tools/search.py
        'onnx': ['onnx', 'onnxruntime', 'onnxscript'],  # tools/export_onnx.py
        'web': ['fastapi', 'uvicorn', 'python-multipart'],  # demo/ (make web-demo)
        'caption': ['pycocoevalcap', 'jieba'],  # CaptionMetric (BLEU, METEOR, ROUGE-L, CIDEr-D; jieba words)
        'dev': ['pytest', 'ruff', 'scikit-learn', 'playwright',  # tests; playwright drives Debian's chromium
                'pyarrow', 'faiss-cpu', 'onnx', 'onnxruntime', 'onnxscript',
                'fastapi', 'uvicorn', 'python-multipart', 'httpx', 'pycocoevalcap', 'jieba'],
    },
)
