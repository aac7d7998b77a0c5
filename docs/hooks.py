"""MkDocs hooks: bring benchmark results and tables from `benchmarks/` into the site.

The benchmarks page must show what is committed under `benchmarks/`, never a copy
that drifts. Two directives, each an HTML comment on a line of its own in a page:

- `<!-- benchmark-results -->` becomes the results report committed under
  `benchmarks/results/` (`README.md`, else `results.md`, as `python -m gramsolve
  bench` writes it), its headings moved one level down, followed by every plot in
  that folder the report does not show itself. The plots are copied into the site.
  Without a report, a placeholder note says where results will be.
- `<!-- section: benchmarks/README.md#Heading -->` becomes the section of that file
  under `## Heading`, up to the next heading of the same or a higher level. A missing
  file or section is an error, so the build fails instead of showing stale text.

In both, links to files the site does not have become plain text, since the site
cannot serve them; links to plots under `benchmarks/results/` point at the copies.
"""

import re
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path("benchmarks") / "results"
RESULTS_MARKER = "<!-- benchmark-results -->"
PLACEHOLDER = """!!! note "Placeholder"

    Results are committed under `benchmarks/results/`. None are in this checkout
    yet: run `python -m gramsolve bench --out benchmarks/results` and rebuild the
    site to show them here.
"""
_SECTION = re.compile(r"^<!-- section: (?P<path>[^#]+)#(?P<heading>.+?) -->$", re.M)
_LINK = re.compile(
    r"(?P<bang>!?)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?P<title>\s+\"[^\"]*\")?\)"
)
_HEADING = re.compile(r"^(?P<hashes>#{1,6})\s+(?P<title>.*?)\s*#*\s*$")
_IMAGE_SUFFIXES = (".png", ".svg", ".jpg", ".jpeg", ".gif")


def _outside_fences(text: str):
    """(line, inside a code fence) for each line of markdown text."""
    fence = None
    for line in text.splitlines():
        stripped = line.lstrip()
        marker = stripped[:3]
        if fence is None and marker in ("```", "~~~"):
            fence = marker
            yield line, True
        elif fence is not None:
            if stripped.startswith(fence) and not stripped.strip(fence[0]).strip():
                fence = None
            yield line, True
        else:
            yield line, False


def rewrite_links(
    text: str, source_dir: Path, root: Path = ROOT
) -> tuple[str, set[Path]]:
    """Links in `text` (a file in `source_dir`) made valid on the site: files under
    `benchmarks/results/` become links to their copies (returned, relative to
    `root`), external links and anchors stay, anything else becomes its text."""
    served: set[Path] = set()

    def replace(match: re.Match) -> str:
        target = match["target"]
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            return match[0]
        path, _, anchor = target.partition("#")
        resolved = (source_dir / path).resolve()
        results = (root / RESULTS).resolve()
        if resolved.is_file() and resolved.is_relative_to(results):
            relative = resolved.relative_to(root)
            served.add(relative)
            new_target = relative.as_posix() + (f"#{anchor}" if anchor else "")
            return (
                f"{match['bang']}[{match['text']}]({new_target}{match['title'] or ''})"
            )
        if match["bang"]:
            return f"*[{match['text'] or 'image'}: `{target}`]*"
        return match["text"]

    lines = []
    for line, fenced in _outside_fences(text):
        lines.append(line if fenced else _LINK.sub(replace, line))
    return "\n".join(lines), served


def demote_headings(text: str, levels: int = 1) -> str:
    lines = []
    for line, fenced in _outside_fences(text):
        match = None if fenced else _HEADING.match(line)
        if match:
            depth = min(6, len(match["hashes"]) + levels)
            line = f"{'#' * depth} {match['title']}"
        lines.append(line)
    return "\n".join(lines)


def results_report(root: Path = ROOT) -> tuple[str, set[Path]]:
    """The markdown that replaces `<!-- benchmark-results -->`, and the files under
    `benchmarks/results/` it shows."""
    folder = root / RESULTS
    report = next(
        (
            folder / name
            for name in ("README.md", "results.md")
            if (folder / name).is_file()
        ),
        None,
    )
    if report is None:
        return PLACEHOLDER, set()
    text, served = rewrite_links(report.read_text(), folder, root)
    text = demote_headings(text)
    plots = sorted(
        path.relative_to(root)
        for path in folder.rglob("*")
        if path.suffix.lower() in _IMAGE_SUFFIXES
        and path.relative_to(root) not in served
    )
    if plots:
        text += "\n\n### Plots\n"
        for plot in plots:
            text += f"\n![{plot.stem.replace('_', ' ')}]({plot.as_posix()})\n"
        served.update(plots)
    return text, served


def section(path: str, heading: str, root: Path = ROOT) -> str:
    """The section of the markdown file `path` (relative to `root`) under the heading
    `heading`, without the heading itself."""
    file = root / path
    if not file.is_file():
        raise FileNotFoundError(f"docs section include: {path} does not exist")
    collected, level = [], None
    for line, fenced in _outside_fences(file.read_text()):
        match = None if fenced else _HEADING.match(line)
        if level is None:
            if match and match["title"] == heading:
                level = len(match["hashes"])
            continue
        if match and len(match["hashes"]) <= level:
            break
        collected.append(line)
    if level is None:
        raise ValueError(f"docs section include: no heading {heading!r} in {path}")
    text, _ = rewrite_links("\n".join(collected).strip("\n"), file.parent, root)
    return text


def on_files(files, config):
    from mkdocs.structure.files import File

    _, served = results_report()
    for path in sorted(served):
        files.append(
            File(
                path.as_posix(),
                src_dir=str(ROOT),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    return files


def on_page_markdown(markdown, page, config, files):
    if RESULTS_MARKER in markdown:
        report, _ = results_report()
        markdown = markdown.replace(RESULTS_MARKER, report)
    return _SECTION.sub(
        lambda m: section(m["path"].strip(), m["heading"].strip()), markdown
    )

