"""The README's and the site's static Python examples (```python blocks starting ``import numpy as np``) run
as shown. The site's ``{runpython}`` blocks are not here: the site's build runs them (tests/test_docs.py);
nor are the pages another test already runs (RUN_ELSEWHERE), so nothing runs twice."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RUN_ELSEWHERE = {"docs/guides/torch_round_trip.md": "tests/test_torch_io.py"}
PAGES = [README] + sorted(p for p in (ROOT / "docs").rglob("*.md")
                          if "_build" not in p.parts and str(p.relative_to(ROOT)) not in RUN_ELSEWHERE)
EXAMPLES = [
    (page, b)
    for page in PAGES
    for b in re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S)
    if b.startswith("import numpy as np")
]
BLOCKS = [b for page, b in EXAMPLES if page == README]
EXAMPLES = [(page, b) for page, b in EXAMPLES if page == README or b not in BLOCKS]  # a block run once


def test_readme_has_runnable_examples():
    assert len(BLOCKS) >= 1
    for page, test in RUN_ELSEWHERE.items():  # the test that runs an excluded page's code still reads it
        assert page in (ROOT / test).read_text(encoding="utf-8"), f"{test} no longer runs {page}"


@pytest.mark.parametrize("page, code", EXAMPLES,
                         ids=[f"{page.relative_to(ROOT)}-{i}" for i, (page, _) in enumerate(EXAMPLES)])
def test_readme_example_runs(page, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example may write a file (a checkpoint)
    exec(compile(code, str(page), "exec"), {})
