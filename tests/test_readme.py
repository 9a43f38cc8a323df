"""The README's and docs/'s self-contained Python examples (blocks starting ``import numpy as np``) run as
shown."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README] + sorted((ROOT / "docs").glob("*.md"))
EXAMPLES = [
    (page, b)
    for page in PAGES
    for b in re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S)
    if b.startswith("import numpy as np")
]
BLOCKS = [b for page, b in EXAMPLES if page == README]
EXAMPLES = [(page, b) for page, b in EXAMPLES if page == README or b not in BLOCKS]  # a block run once


def test_readme_has_runnable_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("page, code", EXAMPLES,
                         ids=[f"{page.name}-{i}" for i, (page, _) in enumerate(EXAMPLES)])
def test_readme_example_runs(page, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example may write a file (a checkpoint)
    exec(compile(code, str(page), "exec"), {})
