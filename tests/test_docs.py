"""The documentation site (docs/): it builds with warnings as errors, by the command the README gives; every
page of the toctree is there; the API reference lists the public names; the tutorials ran during the build;
the math renders offline, in a real browser where one is installed; and the README and the site say the
same thing (the site's index includes the README's sections).

The site is built once per module, in a subprocess, exactly as a person would build it.
"""

import html as html_lib
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import manual_bp

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"

pytestmark = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="the site's Sphinx 9 and MyST 5 need Python >= 3.11 (the docs extra)"
)

# The README's sections that the site's index includes (``<!-- site:NAME:start -->`` ... ``end``), each
# with a phrase that must appear, rendered, on the site's front page.
README_SECTIONS = {
    "intro": "derived by hand and written in",
    "install": 'pip install -e ".[test]" && manual-bp check',
    "example": "net.loss_and_grad(X, Y)",
    "explain": "manual-bp explain mlp",
    "commands": "train adding",
    "benchmark": "LSTM T=50, H=256, float64",
    "docs": "python -m sphinx -W --keep-going -b html docs docs/_build/html",
}


def readme_build_command():
    """The README's one build command, as an argument list."""
    lines = [l for l in README.read_text(encoding="utf-8").splitlines() if l.startswith("python -m sphinx ")]
    assert len(lines) == 1, f"the README must give one build command; found {lines}"
    return shlex.split(lines[0])


def toctree_pages():
    """Every document named in a toctree of the index."""
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    pages = []
    for block in re.findall(r"```\{toctree\}\n(.*?)```", index, re.S):
        pages += [l.strip() for l in block.splitlines() if l.strip() and not l.startswith(":")]
    return pages


class Build:
    """The site's build with the README's command, into ``folder/html``, running in a subprocess.

    ``conftest.py`` starts it as soon as the tests are collected and runs this module last, so that the build
    (about 10 s of one core) overlaps the rest of the suite, which runs on one thread; run alone, the fixture
    starts it. ``result()`` waits for it: ``(html folder, CompletedProcess)``.
    """

    def __init__(self, folder):
        self.out = Path(folder) / "html"
        cmd = readme_build_command()
        assert cmd[-2:] == ["docs", "docs/_build/html"], cmd
        self.cmd = [sys.executable] + cmd[1:-1] + [str(self.out), "-q", "-d", str(Path(folder) / "doctrees")]
        self.logs = [open(Path(folder) / name, "w+", encoding="utf-8") for name in ("stdout", "stderr")]
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, stdout=self.logs[0], stderr=self.logs[1], text=True)

    def result(self):
        code = self.proc.wait(timeout=300)
        stdout, stderr = (f.seek(0) or f.read() for f in self.logs)
        return self.out, subprocess.CompletedProcess(self.cmd, code, stdout, stderr)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in self.logs:
            f.close()


@pytest.fixture(scope="module")
def site(request, tmp_path_factory):
    """The site, built once with the README's command into a temporary folder: ``(html folder, result)``."""
    build = getattr(request.config, "docs_build", None)
    if build is None:
        build = Build(tmp_path_factory.mktemp("site"))
        request.addfinalizer(build.stop)
    return build.result()


def html(site, page):
    return (site[0] / f"{page}.html").read_text(encoding="utf-8")


def text(site, page):
    """The page's text as a reader sees it: tags (and highlighting's spans) removed, entities decoded."""
    return html_lib.unescape(re.sub(r"<[^>]+>", "", html(site, page)))


def test_site_builds_without_warnings(site):
    _, result = site
    assert result.returncode == 0, f"the site's build failed:\n{result.stdout}\n{result.stderr}"
    assert "WARNING" not in result.stderr and "ERROR" not in result.stderr, result.stderr


def test_every_page_is_built_and_in_the_toctree(site):
    pages = toctree_pages()
    assert pages[0] == "trace", "the Learn section starts with the trace page"
    for page in ["index"] + pages:
        assert (site[0] / f"{page}.html").is_file(), f"{page}.html was not built"
    sources = {str(p.relative_to(DOCS).with_suffix("")) for p in DOCS.rglob("*.md")
               if "_build" not in p.parts}
    assert sources - {"index"} == set(pages), "every page of docs/ is in the index's toctree, and only those"


def test_api_reference_lists_the_public_names(site):
    api = html(site, "api")
    ids = set(re.findall(r'id="(manual_bp\.[\w.]+)"', api))
    for name in manual_bp.__all__:
        if name == "__version__":
            continue
        obj = getattr(manual_bp, name)
        if isinstance(obj, type(manual_bp)):  # a module: some of its members are documented
            assert any(i.startswith(f"manual_bp.{name}.") for i in ids), f"nothing of {name} in the API"
        else:
            assert any(i == f"manual_bp.{name}" or i.endswith(f".{name}") for i in ids), f"{name} not in API"
    for method in ("MLP.loss_and_grad", "MLP.jvp", "MLP.hvp", "MLP.trace",
                   "recurrent.Recurrent.loss_and_grad", "recurrent.Recurrent.jvp", "recurrent.Recurrent.hvp",
                   "recurrent.Recurrent.trace"):
        assert f"manual_bp.{method}" in ids, f"{method} not in the API"


def test_tutorials_ran_during_the_build(site):
    assert "runpython-output" in html(site, "tutorials/first_gradient")
    first = text(site, "tutorials/first_gradient")
    assert re.search(r"largest relative difference, backprop vs central differences: \d\.\de-\d\d", first)
    assert "truncate=T-1 equals full BPTT bit for bit: True" in text(site, "tutorials/recurrent")
    assert "failing arrays: ['c']" in text(site, "tutorials/your_gradients")
    assert re.search(r"held-out accuracy: \d\.\d\d", text(site, "tutorials/training"))


def test_a_failing_tutorial_stops_the_build(tmp_path):
    """A {runpython} block that raises fails the build, naming the page, the block and the error."""
    from io import StringIO

    from sphinx.application import Sphinx
    from sphinx.errors import ExtensionError

    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(DOCS / '_ext')!r})\nextensions = ['myst_parser', 'runpython']\n"
    )
    (src / "index.md").write_text(
        "# T\n\n```{runpython}\nx = 1\nprint('first ran')\n```\n\n```{runpython}\nx / 0\n```\n"
    )
    app = Sphinx(str(src), str(src), str(tmp_path / "out"), str(tmp_path / "doctrees"), "html",
                 status=StringIO(), warning=StringIO(), freshenv=True)
    with pytest.raises(ExtensionError, match=r"index\.md:\d+: runpython block 2 raised ZeroDivisionError"):
        app.build()


def test_derivations_show_the_code_itself(site):
    """Each derivation page includes the package's source (never a pasted copy), and its equation tags are
    the docstrings' tags."""
    source = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "manual_bp").glob("*.py"))
    for md in sorted((DOCS / "derivations").glob("*.md")):
        page = md.read_text(encoding="utf-8")
        assert ":pyobject:" in page, f"{md.name} shows no code of the package"
        assert not re.search(r"```python\n[^`]*\bdef ", page), f"{md.name} pastes code, not includes it"
        for tag in re.findall(r"\\tag\{([^}]+)\}", page):
            assert f"({tag})" in source, f"{md.name}: tag ({tag}) is not in manual_bp's docstrings"
    mlp = text(site, "derivations/mlp")
    for tag in ("BP1", "BP2", "BP3", "BP4"):
        assert f"# ({tag})" in mlp, f"the MLP page shows no code line tagged ({tag})"


def test_no_display_math_that_mathjax_rejects(site):
    """Sphinx wraps a display equation that contains a line break in a split environment, where MathJax
    refuses \\tag; such an equation must be written as an amsmath block (\\begin{equation*}...), unnumbered,
    since its \\tag is its number."""
    for page in sorted(site[0].rglob("*.html")):
        source = page.read_text(encoding="utf-8")
        for block in re.findall(r'<div class="math notranslate nohighlight">(.*?)</div>', source, re.S):
            assert not ("\\begin{split}" in block and "\\tag" in block), f"{page.name}: {block[:200]}"
    for md in sorted((DOCS / "derivations").glob("*.md")):  # tagged by \tag alone: no second number beside it
        assert 'class="eqno"' not in html(site, f"derivations/{md.stem}"), f"{md.stem}: a numbered equation"


def test_math_is_served_offline(site):
    out = site[0]
    assert (out / "_static" / "mathjax" / "tex-svg.js").stat().st_size > 100_000
    for md in sorted((DOCS / "derivations").glob("*.md")):
        scripts = re.findall(r'<script[^>]*src="([^"]+)"', html(site, f"derivations/{md.stem}"))
        assert "../_static/mathjax/tex-svg.js" in scripts, f"{md.stem}: {scripts}"
    for page in out.rglob("*.html"):
        scripts = re.findall(r'<script[^>]*src="([^"]+)"', page.read_text(encoding="utf-8"))
        assert not [s for s in scripts if "://" in s], f"{page.name} loads a script remotely: {scripts}"


def test_missing_mathjax_stops_the_build_with_a_clear_message(monkeypatch):
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        import offline_mathjax
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    from sphinx.errors import ConfigError

    assert offline_mathjax.mathjax_source().name == "tex-svg.js"
    monkeypatch.setattr(offline_mathjax.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"django-static-mathjax.*pip install -e \"\.\[docs\]\""):
        offline_mathjax.mathjax_source()


def test_every_figure_in_docs_is_on_the_site(site):
    pages = "".join(p.read_text(encoding="utf-8") for p in DOCS.rglob("*.md") if "_build" not in p.parts)
    for png in sorted(DOCS.glob("*.png")):
        assert re.search(rf"\]\((\.\./)?{re.escape(png.name)}\)", pages), f"docs/{png.name} is on no page"
        assert (site[0] / "_images" / png.name).is_file(), f"docs/{png.name} was not copied into the site"


def test_readme_and_site_say_the_same_thing(site):
    """The site's index includes the README's sections: each marker pair is in the README once, the index
    includes it, and its text is on the built front page."""
    readme = README.read_text(encoding="utf-8")
    index_md = (DOCS / "index.md").read_text(encoding="utf-8")
    index = text(site, "index")
    for name, phrase in README_SECTIONS.items():
        start, end = f"<!-- site:{name}:start -->", f"<!-- site:{name}:end -->"
        assert readme.count(start) == 1 and readme.count(end) == 1, f"README: markers of {name!r}"
        assert readme.index(start) < readme.index(end)
        assert f":start-after: {start}\n:end-before: {end}" in index_md, f"the index lacks {name!r}"
        assert phrase in index, f"the README's {name!r} section is not on the site's front page: {phrase!r}"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for command in ('pip install -e ".[test]" && manual-bp check', "python -m pytest"):
        assert command in ci and command in readme, f"the README and .ci/run differ on {command!r}"


def test_readme_links_resolve():
    """Every relative link of the README names a file or folder of the repository."""
    for link in re.findall(r"\]\(([^)#]+)\)", README.read_text(encoding="utf-8")):
        if "://" not in link:
            assert (ROOT / link).exists(), f"the README links to {link}, which does not exist"


def _browser():
    return next((b for b in ("/usr/bin/chromium", shutil.which("chromium")) if b and Path(b).is_file()), None)


@pytest.mark.skipif(_browser() is None, reason="no headless browser (chromium) installed: math rendering "
                    "not checked in a browser here")
def test_math_renders_in_a_browser(site, tmp_path):
    """A real headless Chromium loads a derivation page from disk (no network) and MathJax turns every math
    span into an SVG, with no TeX error."""
    page = site[0] / "derivations" / "lstm_gru.html"  # inline, display and amsmath blocks
    source = page.read_text(encoding="utf-8")
    expected = len(re.findall(r'<(?:span|div)\b[^>]*class="[^"]*\bmath notranslate nohighlight', source))
    assert expected >= 20, expected
    cmd = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000", "--dump-dom",
           page.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    containers = re.findall(r"<mjx-container[^>]*>(.*?)</mjx-container>", dom, re.S)
    assert len(containers) == expected, f"MathJax rendered {len(containers)} of {expected} math spans"
    assert all("<svg" in c for c in containers), "a math span rendered without SVG"
    assert '<g data-mml-node="merror"' not in dom, "MathJax reported a TeX error on the page"
