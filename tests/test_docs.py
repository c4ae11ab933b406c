"""The documentation works: every ```python block of README.md and docs/*.md runs, and the site builds.

Each block runs on its own: a fresh namespace, a temporary working directory, offline (`KERAZOO_OFFLINE=1`, an
empty `KERAZOO_HOME` and an empty data root), so an example that would download or read real data without
saying so fails here instead of passing on this machine only. A failing block is reported as `file:line`, and
its traceback's line numbers are the Markdown file's. The first lines of a block may carry one marker:

    # docs: skip: <why>             not run (a download, a long training); the reason is the skip's
    # docs: data <name> [<name>...] run where $KERAZOO_DATA holds those data sets (else skipped, or failed
                                    under KERAZOO_REQUIRE_DATA=1, as tests/conftest.py does)
    # docs: slow                    run by `make test-slow`

The site test runs `mkdocs build --strict` (a broken link, anchor, snippet or API reference fails) where the
`docs` extra is installed, and skips with the reason elsewhere; CI installs it. The README, read outside the
site, has its relative links checked here, and the tables it shares with the docs pages must agree.
"""

import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
MARKER = re.compile(r"#\s*docs:\s*(?P<kind>\S+?):?(?:\s+(?P<rest>.*))?$")
MARKER_KINDS = ("skip", "data", "slow")

@dataclasses.dataclass(frozen=True)
class Example:
    """One ```python block: where it is, its code, and its marker."""

    path: Path
    line: int  # 1-based line of the block's first code line
    source: str
    kind: str | None = None  # "skip", "data", "slow" or None
    detail: str = ""  # the skip's reason, or the data sets' names

    @property
    def id(self):
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _marker(source):
    """The block's marker (kind, detail) from its leading comment lines, or (None, "")."""
    for line in source.splitlines():
        if not line.strip():
            continue
        if not line.lstrip().startswith("#"):
            break
        match = MARKER.match(line.strip())
        if match:
            return match["kind"], (match["rest"] or "").strip()
    return None, ""


def python_examples(path):
    """Every ```python fenced block of the Markdown file at `path` (markdown-it finds them, nested in lists too)."""
    tokens = MarkdownIt("commonmark").parse(path.read_text(encoding="utf-8"))
    examples = []
    for token in tokens:
        if token.type == "fence" and token.info.strip().split(" ")[0] == "python":
            kind, detail = _marker(token.content)
            examples.append(Example(path, token.map[0] + 2, token.content, kind, detail))
    return examples


EXAMPLES = [example for path in DOC_FILES for example in python_examples(path)]


def _param(example):
    marks = [pytest.mark.slow] if example.kind == "slow" else []
    return pytest.param(example, id=example.id, marks=marks)


def test_the_documentation_has_examples_that_run():
    """The collection below is not empty, and most blocks run rather than skip (a skip needs its reason)."""
    assert len(EXAMPLES) >= 10, [example.id for example in EXAMPLES]
    skipped = [example.id for example in EXAMPLES if example.kind == "skip"]
    assert len(skipped) * 3 <= len(EXAMPLES), f"more than a third of the examples are skipped: {skipped}"


@pytest.mark.parametrize("example", [_param(example) for example in EXAMPLES])
def test_doc_example_runs(example, tmp_path, monkeypatch, shared_data_dir, fresh_keras_state):
    if example.kind is not None and example.kind not in MARKER_KINDS:
        pytest.fail(f"{example.id}: unknown marker '# docs: {example.kind}'; use one of {MARKER_KINDS}")
    if example.kind == "skip":
        if not example.detail:
            pytest.fail(f"{example.id}: '# docs: skip' needs its reason, e.g. '# docs: skip: downloads CamVid'")
        pytest.skip(example.detail)
    if example.kind == "data":
        if not example.detail:
            pytest.fail(f"{example.id}: '# docs: data' needs the data sets it reads, e.g. '# docs: data camvid'")
        monkeypatch.setenv("KERAZOO_DATA", str(shared_data_dir(*example.detail.split())))
    else:
        monkeypatch.setenv("KERAZOO_DATA", str(tmp_path / "no-data"))  # real data only where the block says so
    monkeypatch.setenv("KERAZOO_OFFLINE", "1")
    monkeypatch.setenv("KERAZOO_HOME", str(tmp_path / "kerazoo-home"))
    monkeypatch.chdir(tmp_path)
    # Blank lines before the code make the traceback's line numbers the Markdown file's.
    code = compile("\n" * (example.line - 1) + example.source, str(example.path), "exec")
    exec(code, {"__name__": "__main__"})


def _docs_tools_missing():
    needed = {"mkdocs": "mkdocs", "material": "mkdocs-material", "mkdocstrings_handlers.python": "mkdocstrings-python"}
    missing = []
    for module, package in needed.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # a parent package is missing
            found = False
        if not found:
            missing.append(package)
    return missing


@pytest.mark.slow
@pytest.mark.skipif(bool(_docs_tools_missing()),
                    reason=f"the docs extra is not installed ({', '.join(_docs_tools_missing())} missing): "
                           "pip install -e '.[docs]'")
def test_docs_site_builds_in_strict_mode(tmp_path):
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})  # no banner about mkdocs 2 in the output
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    # The API reference was generated from the docstrings, not left as `::: name` lines.
    api = (site / "reference" / "models" / "index.html").read_text(encoding="utf-8")
    for anchor in ("kerazoo.models.create_model", "kerazoo.models.model.ZooModel", "kerazoo.encoders.list_encoders"):
        assert f'id="{anchor}"' in api, f"no API entry for {anchor}"
    assert ":::" not in api
    # The measurement pages include their reports (the snippet lines were replaced by the files' text).
    for page in (ROOT / "docs" / "reports").glob("*.md"):
        included = re.search(r'--8<-- "([^"]+)"', page.read_text(encoding="utf-8"))[1]
        first_heading = next(line.lstrip("# ").strip() for line in (ROOT / included).read_text().splitlines()
                             if line.startswith("#"))
        html = (site / "reports" / page.stem / "index.html").read_text(encoding="utf-8")
        assert "--8&lt;--" not in html and "--8<--" not in html, page.name
        assert first_heading.split("`")[0][:30] in html, f"{page.name} does not show {included}"


def test_readme_links_point_to_files_that_exist():
    """The README is read on the repository's front page, outside the site: its relative links are checked here."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    relative = [link.split("#")[0] for link in links if not re.match(r"[a-z]+://|#|mailto:", link)]
    assert relative, "the README links to no page of the documentation"
    missing = [link for link in relative if not (ROOT / link).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def _tables(path):
    """The Markdown tables of the file at `path`: {header line: its body rows}."""
    tables, current = {}, None
    for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        if line.startswith("|"):
            current = [*(current or []), line]
        elif current is not None:
            tables[current[0]] = current[2:]
            current = None
    return tables


def test_tables_in_the_readme_and_the_docs_agree():
    """The zoo tables appear in the README and in the docs pages: a figure changed in one is changed in both."""
    readme = _tables(ROOT / "README.md")
    shared = 0
    # The site's pages, and the reports they include (`--8<-- "export_matrix/COMBINATIONS.md"`).
    included = [ROOT / path for page in DOC_FILES[1:]
                for path in re.findall(r'^--8<-- "([^"]+)"', page.read_text(encoding="utf-8"), re.MULTILINE)]
    for page in [*DOC_FILES[1:], *included]:
        for header, rows in _tables(page).items():
            if header in readme:
                shared += 1
                assert rows == readme[header], f"{page.relative_to(ROOT)}: the table {header!r} is not the README's"
    assert shared >= 3, "the models x encoders and the preset tables should be in the README and in the docs"
