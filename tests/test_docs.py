"""The project's words stay true: paths named in docstrings, comments and markdown exist, and README's example runs.

A path of this repository (one starting with gdrae/, pipelines/, cli/,
bench/, tests/, configs/, docs/ or Datasets/) named in a docstring, a
comment or a markdown file must exist; so must the target of a relative
markdown link. The specification is cited by its place in docs/ (e.g.
docs/model.md section 6), never by the upper-case file names it had
outside the repository. A file of another project is cited with that
project's name first (``owner/name: path``) and is not checked.
"""
import ast
import glob
import io
import itertools
import re
import sys
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIRS = (".ci", "bench", "cli", "configs", "docs", "gdrae", "pipelines", "tests")
TOP_FILES = ("README.md", "setup.cfg", "pyproject.toml", "Datasets/README.md")
HASH_COMMENTED = {".yaml", ".yml", ".sh", ".cfg", ".toml", ""}  # files whose comments start with '#'

PREFIXES = ("gdrae", "pipelines", "cli", "bench", "tests", "configs", "docs", "Datasets")
PATH = re.compile(r"(?<![\w./\-])(?:" + "|".join(PREFIXES) + r")/(?:[\w.*<>\-/]|\{[^}\s]*\})*")
OTHER_PROJECT = re.compile(r"[\w.\-]+/[\w.\-]+: $")  # "tensorflow/datasets: " before the path
LINK = re.compile(r"\]\(([^)\s]+)\)")
# the specification's former names, spelled so that this file does not contain them
BARE_SPEC = re.compile(r"\b(?:" + "|".join(("MO" + "DEL", "DE" + "SIGN", "ME" + "TRICS", "DATA" + "SETS")) + r")\.md\b")


def project_files() -> list[Path]:
    files = [ROOT / name for name in TOP_FILES if (ROOT / name).exists()]
    for folder in SOURCE_DIRS:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and (
                    path.suffix in {".py", ".md"} | HASH_COMMENTED):
                files.append(path)
    return files


def prose(path: Path) -> list[tuple[int, str]]:
    """(line, text) of the words of a file: all of a markdown file, docstrings and comments elsewhere."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".md":
        return [(i, line) for i, line in enumerate(text.splitlines(), 1)]
    if path.suffix == ".py":
        found = [(tok.start[0], tok.string) for tok in tokenize.generate_tokens(io.StringIO(text).readline)
                 if tok.type == tokenize.COMMENT]
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node, clean=False)
                if doc is not None:
                    first = node.body[0].lineno
                    found += [(first + i, line) for i, line in enumerate(doc.splitlines())]
        return found
    return [(i, line[line.index("#"):]) for i, line in enumerate(text.splitlines(), 1) if "#" in line]


def candidates(name: str) -> list[str]:
    """Glob patterns a named path stands for: ``<x>`` is any name, ``{a,b}`` either, ``...`` elides the rest."""
    name = name.split("...")[0].rstrip(".")
    name = re.sub(r"<[^>]*>", "*", name)
    parts = re.split(r"(\{[^}]*\})", name)
    options = [p[1:-1].split(",") if p.startswith("{") else [p] for p in parts]
    return ["".join(choice) for choice in itertools.product(*options)]


def exists(pattern: str, base: Path) -> bool:
    return any(glob.glob(str(base / pattern))) or (base / pattern).exists()


def problems(path: Path) -> list[str]:
    rel = path.relative_to(ROOT)
    found = []
    for line_no, line in prose(path):
        where = f"{rel}:{line_no}"
        for m in BARE_SPEC.finditer(line):
            found.append(f"{where}: names {m.group()} bare: cite its page in docs/")
        for m in PATH.finditer(line):
            name = m.group().rstrip(".,:;")
            if OTHER_PROJECT.search(line[:m.start()]):
                continue
            if name.startswith("Datasets/") and not name.endswith(".md"):
                continue  # where a user puts raw downloads (git-ignored), not a file of the repository
            if not all(exists(p, ROOT) for p in candidates(name)):
                found.append(f"{where}: names {name}, which does not exist")
        if path.suffix == ".md":
            for target in LINK.findall(line):
                if re.match(r"[a-z]+:", target) or target.startswith("#"):
                    continue
                target = target.split("#")[0]
                if not (path.parent / target).exists():
                    found.append(f"{where}: links to {target}, which does not exist")
    return found


def test_named_paths_exist_and_the_specification_is_cited_in_docs():
    found = [p for path in project_files() for p in problems(path)]
    assert not found, "\n".join(found)


def test_the_check_finds_what_it_is_meant_to(tmp_path, monkeypatch):
    doc = tmp_path / "note.md"
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "model.md").write_text("x")
    doc.write_text("\n".join([
        "See docs/model.md section 6 and docs/missing.md.",             # one good, one missing
        "The " + "MO" + "DEL.md file is gone.",                          # bare old name
        "tensorflow/datasets: docs/catalog/overview.md is theirs.",      # another project: not checked
        "Raw files go to Datasets/dsprites/<file>.npz.",                 # user data: not checked
        "[model](docs/model.md) and [gone](docs/gone.md).",              # links
        "Pipelines: docs/{model,lost}.md and docs/<page>.md.",
    ]))
    found = problems(doc)
    assert [f.split(": ", 1)[1] for f in found] == [
        "names docs/missing.md, which does not exist",
        "names " + "MO" + "DEL.md bare: cite its page in docs/",
        "names docs/gone.md, which does not exist",
        "links to docs/gone.md, which does not exist",
        "names docs/{model,lost}.md, which does not exist",
    ]
    code = tmp_path / "module.py"
    code.write_text('"""Reads docs/model.md."""\n'
                    'PATH = "docs/data.md"  # a string of the code, not checked; this comment names docs/gone.md\n'
                    'def f():\n    """See docs/lost.md."""\n')
    assert [f.split(": ", 1)[1] for f in problems(code)] == [
        "names docs/gone.md, which does not exist", "names docs/lost.md, which does not exist"]


def readme_example() -> str:
    """The first ```python block of README.md."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"```python\n(.*?)```", text, re.S)
    assert m, "README.md has no ```python example"
    return m.group(1)


def test_readme_python_example_runs_on_a_tiny_cache(tmp_path, monkeypatch, one_thread):
    """The example runs as written, from a project folder holding the demo's cache and checkpoint (both tiny here)."""
    import torch
    from evalkit import make_cache, tiny_config

    from gdrae.checkpoint import checkpoint_state, write_checkpoint
    from gdrae.models import build_model

    make_cache(tmp_path / "cache", "shapes2d-synth-small", sizes=(3, 2, 2))
    cfg = tiny_config("image", tmp_path / "cache", tmp_path / "runs" / "demo", "shapes2d-synth-small")
    model = build_model(cfg)
    state = checkpoint_state(model, {"model": torch.optim.Adam(model.parameters())}, 0, cfg)
    write_checkpoint(tmp_path / "runs" / "demo" / "checkpoints", state, keep=1)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)
    assert namespace["codes"].shape == (12, 3)  # every cell of the 3 x 2 x 2 grid, the tiny model's nz
