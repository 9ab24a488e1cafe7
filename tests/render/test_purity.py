"""viewer/render imports only stdlib, numpy, pydicom, pylibjpeg, Pillow and simplejpeg."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import viewer.render

RENDER_DIR = Path(viewer.render.__file__).parent
ALLOWED_THIRD_PARTY = {"numpy", "pydicom", "PIL", "pylibjpeg", "libjpeg", "openjpeg", "rle", "simplejpeg"}


def _imports(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, node.lineno))
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__":
            found.append(("__import__", node.lineno))
    return found


def test_render_package_has_modules_to_check():
    assert {p.name for p in RENDER_DIR.glob("*.py")} >= {
        "__init__.py",
        "errors.py",
        "params.py",
        "decode.py",
        "lut.py",
        "viewport.py",
        "tiles.py",
        "overlay.py",
        "encode.py",
        "pipeline.py",
    }


def test_render_imports_only_stdlib_numpy_pydicom_pillow_pylibjpeg_simplejpeg():
    offenders = []
    for path in sorted(RENDER_DIR.rglob("*.py")):
        for module, line in _imports(path):
            top = module.split(".")[0]
            if top in sys.stdlib_module_names or top in ALLOWED_THIRD_PARTY:
                continue
            offenders.append(f"{path.name}:{line} imports {module}")
    assert offenders == []


def test_render_never_touches_pydicom_config_or_logging_config():
    for path in RENDER_DIR.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "pydicom.config" not in text and "from pydicom import config" not in text, path.name
        assert "basicConfig" not in text and "dictConfig" not in text, path.name
        assert "import logging" not in text, path.name


def test_importing_render_does_not_import_django():
    code = "import sys, viewer.render; assert 'django' not in sys.modules, 'django imported'"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=RENDER_DIR.parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-500:]


def test_every_public_function_has_a_docstring_with_returns_or_parameters():
    missing = []
    for path in sorted(RENDER_DIR.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.ClassDef) or node.name.startswith("_"):
                continue
            doc = ast.get_docstring(node) or ""
            if not doc:
                missing.append(f"{path.name}:{node.name} has no docstring")
            elif isinstance(node, ast.FunctionDef) and node.col_offset == 0 and "Returns" not in doc:
                missing.append(f"{path.name}:{node.name} has no Returns section")
    assert missing == []
