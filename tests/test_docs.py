"""The documentation holds together: README.md, CHANGELOG.md, docs/*.md and
benchmarks/README.md link only to files and headings that exist, the README stays short
and prints the commands CI and newcomers run, and nothing in the repository points at a
design file outside it.

External http(s) links are not checked (the tests run without a network).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"

#: Every markdown file whose links are checked.
MARKDOWN = sorted([README, ROOT / "CHANGELOG.md", ROOT / "benchmarks" / "README.md",
                   *DOCS.glob("*.md")])

#: Names of files outside the repository that nothing in it may mention. Built from
#: pieces so that this file does not contain them itself.
FORBIDDEN = (
    "DESIGN" + ".md",
    "SMPP" + "-FACTS",
    "STYLE" + ".md",
    ".." + "/shared",
    "specs" + "/smpp-",
    "specs" + "/provider-",
)

#: Where those names must not appear (globs from the repository root).
SEARCHED = ("README.md", "CHANGELOG.md", "docs/**/*", "smppbridge/**/*.py", "tests/**/*.py",
            "conf/**/*", "benchmarks/**/*", "fuzz/**/*", "systemd/**/*", "Dockerfile",
            "pyproject.toml", ".ci/**/*")

#: The commands the README must print verbatim, each on its own line of a ```sh block.
#: CI (.ci/run) runs the test command exactly as the README prints it.
README_COMMANDS = (
    "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/smppbridge serve",
    "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/pytest",
)

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_INLINE_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
_REF_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
_EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


def _prose_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of every line outside fenced code blocks."""
    fence: str | None = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = _FENCE.match(line)
        if fence is None:
            if m:
                fence = m.group(1)
                continue
            yield number, line
        elif m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) \
                and not line.strip()[len(m.group(1)):].strip():
            fence = None


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: inline markup dropped, lower case, punctuation
    other than hyphens and underscores removed, each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links → their text
    text = text.replace("`", "").replace("*", "")
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file, with GitHub's -1, -2 … for repeats."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for _, line in _prose_lines(path):
        m = _HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, target) of every inline link, image and reference definition
    outside code blocks and code spans."""
    for number, line in _prose_lines(path):
        prose = _CODE_SPAN.sub("", line)
        for m in _INLINE_LINK.finditer(prose):
            yield number, m.group(1).strip("<>")
        m = _REF_DEF.match(prose)
        if m:
            yield number, m.group(1).strip("<>")


def _link_cases() -> list[tuple[Path, int, str]]:
    return [(path, number, target) for path in MARKDOWN if path.exists()
            for number, target in links(path)]


def test_the_checked_markdown_files_exist() -> None:
    """README.md, CHANGELOG.md, benchmarks/README.md and a docs/ folder of pages exist."""
    missing = [str(p.relative_to(ROOT)) for p in MARKDOWN if not p.exists()]
    assert not missing
    assert len(list(DOCS.glob("*.md"))) >= 10


def test_slug_follows_github() -> None:
    """Anchors are computed as GitHub computes them, so a link that passes here works
    on the rendered page."""
    assert slug("`err:` codes") == "err-codes"
    assert slug("Provider workers (`worker`)") == "provider-workers-worker"
    assert slug("SIGTERM / SIGINT: graceful stop") == "sigterm--sigint-graceful-stop"
    assert slug("command_status values returned") == "command_status-values-returned"
    assert slug("Cluster mode (Redis)") == "cluster-mode-redis"


@pytest.mark.parametrize(("path", "number", "target"), _link_cases(),
                         ids=lambda v: v.name if isinstance(v, Path) else str(v))
def test_every_relative_link_resolves(path: Path, number: int, target: str) -> None:
    """A relative link names an existing file or folder, and its #anchor (in the same
    file or in another markdown file) is one of that file's headings."""
    if _EXTERNAL.match(target):
        return  # http(s) and other schemes: not checked offline
    file_part, _, anchor = target.partition("#")
    where = f"{path.relative_to(ROOT)}:{number}: {target}"
    dest = (path.parent / unquote(file_part)).resolve() if file_part else path
    assert dest.exists(), f"{where}: no such file"
    assert ROOT.resolve() in (dest, *dest.parents), f"{where}: outside the repository"
    if anchor:
        assert dest.suffix == ".md", f"{where}: anchor into a file that is not markdown"
        assert unquote(anchor) in anchors(dest), f"{where}: no such heading"


def test_readme_is_short() -> None:
    """README.md stays an entry page of at most 200 lines; the detail lives in docs/."""
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines"


def test_readme_prints_the_commands_verbatim() -> None:
    """The demo and test commands appear verbatim, each on its own line of a ```sh
    block: CI runs the test command exactly as the README prints it."""
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"^```sh\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    lines = {line for block in blocks for line in block.splitlines()}
    for command in README_COMMANDS:
        assert command in lines, command


def test_readme_links_every_docs_page() -> None:
    """Every page under docs/ is reachable from the README by a relative link."""
    targets = {t.partition("#")[0] for _, t in links(README)}
    unlinked = [p.name for p in DOCS.glob("*.md") if f"docs/{p.name}" not in targets]
    assert not unlinked


def _searched_files() -> Iterator[Path]:
    me = Path(__file__).resolve()
    seen: set[Path] = set()
    for pattern in SEARCHED:
        for path in ROOT.glob(pattern):
            real = path.resolve()
            if (path.is_file() and real != me and real not in seen
                    and "__pycache__" not in path.parts):
                seen.add(real)
                yield path


def test_nothing_names_a_file_outside_the_repository() -> None:
    """No file of the repository (docs, code, tests, config, benchmarks) links to or names
    a design file outside it: whatever the code relies on is stated in docs/."""
    found = []
    for path in _searched_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            for word in FORBIDDEN:
                if word in line:
                    found.append(f"{path.relative_to(ROOT)}:{number}: {word}")
    assert not found, "\n".join(found)
