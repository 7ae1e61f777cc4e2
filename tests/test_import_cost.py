"""``import r2d2lib`` loads no optional part: guarded by counting the modules it imports, not by timing."""
import json
import subprocess
import sys

OPTIONAL = ('faiss', 'onnx', 'onnxruntime', 'fastapi', 'uvicorn', 'timm', 'mmpretrain', 'matplotlib',
            'pyarrow', 'sklearn')


def imported_after(statement: str) -> set:
    code = f'import sys; {statement}; import json; print(json.dumps(sorted(sys.modules)))'
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_import_r2d2lib_imports_no_optional_part_and_little_beyond_torch():
    torch_only = imported_after('import torch')
    package = imported_after('import r2d2lib')
    assert not {m for m in package if m.split('.')[0] in OPTIONAL}
    assert len(package - torch_only) < 50, sorted(package - torch_only)[:50]


def test_the_top_level_names_load_on_first_use_without_optional_parts():
    modules = imported_after('from r2d2lib import R2D2Model, DualEncoderModel, R2D2Inferencer, load_model, '
                             'get_model, list_models, list_pretrained')
    assert not {m for m in modules if m.split('.')[0] in OPTIONAL}
    assert 'r2d2lib.models.objectives' in modules and 'r2d2lib.apis.loading' in modules
