"""The documentation: its code runs, its API reference is complete, its includes hold.

Each page's python blocks run in a fresh process (two pages at a time), as a reader
would run them: float64 only if the page enables it, figures to a temporary folder.
See `docs/scripts/doccode.py` for the conventions.
"""

import concurrent.futures
import importlib
import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import gramsolve as gs


ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "scripts"))
import doccode  # noqa: E402


PAGE_TIMEOUT_SECONDS = 600
SUBPACKAGES = ("ngd", "pde", "problems")


def _load_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _public_names(module) -> list[str]:
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    ]


def _documented() -> dict[str, str]:
    """Identifier of each `::: identifier` block in the API pages -> page."""
    found = {}
    for page in sorted((DOCS / "api").glob("*.md")):
        for line in page.read_text().splitlines():
            match = re.match(r"^:::\s+(\S+)\s*$", line)
            if match:
                found[match[1]] = page.name
    return found


def test_api_reference_covers_every_public_name():
    documented = _documented()
    # the subpackages in __all__ are documented as modules (their docstrings)
    expected = {f"gramsolve.{name}" for name in gs.__all__}
    for package in SUBPACKAGES:
        module = importlib.import_module(f"gramsolve.{package}")
        expected.update(f"gramsolve.{package}.{n}" for n in _public_names(module))
    missing = sorted(expected - set(documented))
    assert not missing, f"public names missing from docs/api/*.md: {missing}"


def test_api_reference_names_exist():
    for identifier, page in _documented().items():
        parts = identifier.split(".")
        assert parts[0] == "gramsolve", f"{page}: {identifier} is not in gramsolve"
        obj = gs
        for part in parts[1:]:
            assert hasattr(obj, part), f"{page}: {identifier} does not exist"
            obj = getattr(obj, part)


def test_every_page_is_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text()
    listed = set(re.findall(r"(?:^\s*-\s*|:\s*)([\w/.-]+\.md)\s*$", nav, re.M))
    pages = {
        p.relative_to(DOCS).as_posix()
        for p in DOCS.rglob("*.md")
        if p.relative_to(DOCS).parts[0] not in ("outputs", "scripts")
    }
    missing = sorted(pages - listed)
    assert not missing, f"pages not in the mkdocs.yml navigation: {missing}"
    assert not sorted(listed - pages), "the navigation names pages that do not exist"


@pytest.mark.parametrize("page", doccode.PAGES)
def test_output_includes_follow_their_blocks(page):
    assert (DOCS / page).is_file(), f"{page} is listed in doccode.PAGES but missing"
    assert doccode.check_includes(page) == []


def test_doccode_finds_blocks_and_checks_includes(tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n```python\nx = 1\nprint(x + 1)\n```\n\n```text\n"
        '--8<-- "docs/outputs/page-1.txt"\n```\n\n'
        "```{.python .no-run}\nnot run\n```\n\n"
        "    ```python\n    y = x * 3\n    ```\n\n"
        '```text\n--8<-- "docs/outputs/page-1.txt"\n```\n'
    )
    monkeypatch.setenv("GRAMSOLVE_DOCS_OUT", str(tmp_path))  # restored afterwards
    monkeypatch.setattr(doccode, "DOCS", tmp_path)
    monkeypatch.setattr(doccode, "OUTPUTS", tmp_path / "outputs")
    blocks = doccode.python_blocks("page.md")
    assert [(b.number, b.line, b.code) for b in blocks] == [
        (1, 3, "x = 1\nprint(x + 1)"),
        (2, 16, "y = x * 3"),
    ]
    printed = doccode.run_page("page.md", tmp_path)
    assert printed == {1: "2\n", 2: ""}
    problems = doccode.check_includes("page.md")
    # both includes name a file not written yet; the second one follows block 2,
    # not block 1
    assert sum("is missing" in p for p in problems) == 2
    assert sum("right after it" in p for p in problems) == 1
    doccode.write_outputs("page.md", printed)
    assert (tmp_path / "outputs" / "page-1.txt").read_text() == "2\n"
    problems = doccode.check_includes("page.md")
    assert len(problems) == 1 and "page.md:21" in problems[0]
    # what block 1 prints now is checked against the recording, in numbers unless
    # the page marks its output as varying
    assert doccode.check_outputs("page.md", {1: "2\n", 2: ""}) == []
    (problem,) = doccode.check_outputs("page.md", {1: "300\n", 2: ""})
    assert "300 where 2 was recorded" in problem
    text = page.read_text().replace(
        "```\n\n```text\n--8<--", "```\n\n<!-- output varies -->\n```text\n--8<--", 1
    )
    page.write_text(text)
    assert doccode.varying_outputs("page.md") == {1}
    assert doccode.check_outputs("page.md", {1: "300\n", 2: ""}) == []


def test_compare_output_allows_machine_noise_and_catches_stale_numbers():
    recorded = (
        "ENGD + geodesic acceleration: loss 1.28e-08, relative L2 error 2.32e-05\n"
        "  Dense(space='residual')     537 µs    1.3 MB  ~15 iterations\n"
        "first step: the two differ by 1.2e-12 (relative)\n"
    )
    # Other units, spacing, timings and iteration counts, and round-off-level
    # numbers that moved by orders of magnitude: all within what is allowed.
    rerun = (
        "ENGD + geodesic acceleration: loss 3.1e-08, relative L2 error 1.9e-05\n"
        "  Dense(space='residual') 2.9 ms 1.1 MB ~31 iterations\n"
        "first step: the two differ by 4.0e-15 (relative)\n"
    )
    assert doccode.compare_output(recorded, rerun) == []
    stale = rerun.replace("loss 3.1e-08", "loss 9.3e-12")
    (problem,) = doccode.compare_output(recorded, stale)
    assert "9.3e-12 where 1.28e-08 was recorded" in problem
    slower = rerun.replace("2.9 ms", "12 ms")
    assert doccode.compare_output(recorded, slower) != []
    reworded = rerun.replace("relative L2 error", "relative H1 error")
    (problem,) = doccode.compare_output(recorded, reworded)
    assert problem.startswith("line 1 reads")
    assert doccode.compare_output(recorded, rerun + "one more line\n") != []
    assert doccode.compare_output(recorded, stale, numbers=False) == []
    assert doccode.compare_output(recorded, reworded, numbers=False) != []
    assert doccode.compare_output("differs by 0.0e+00\n", "differs by 3e-3\n") != []


def _child_environment() -> dict[str, str]:
    env = dict(os.environ)
    # Pages must enable float64 themselves, as a reader's program does.
    env.pop("JAX_ENABLE_X64", None)
    env["MPLBACKEND"] = "Agg"
    # Two pages run at once: one compute thread each shares two cores without
    # oversubscription.
    env["XLA_FLAGS"] = " ".join(
        filter(
            None,
            [
                env.get("XLA_FLAGS"),
                "--xla_cpu_multi_thread_eigen=false",
            ],
        )
    )
    source = str(Path(gs.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(
        [source, *filter(None, [env.get("PYTHONPATH")])]
    )
    return env


def _run_page(page: str, figures: Path) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        str(DOCS / "scripts" / "doccode.py"),
        page,
        "--figures",
        str(figures),
        "--check-outputs",
        "--timing",
    ]
    return subprocess.run(
        command,
        cwd=ROOT,
        env=_child_environment(),
        capture_output=True,
        text=True,
        timeout=PAGE_TIMEOUT_SECONDS,
    )


@pytest.fixture(scope="module")
def page_runs(request, tmp_path_factory):
    """Starts the selected pages, two at a time, on first use; page -> future."""
    selected = [
        item.callspec.params["page"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_page_code_runs"
    ]
    figures = tmp_path_factory.mktemp("docs-figures")
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    runs = {page: pool.submit(_run_page, page, figures) for page in selected}
    yield runs
    pool.shutdown(wait=True)


@pytest.mark.parametrize("page", doccode.pages_with_code())
def test_page_code_runs(page, page_runs):
    result = page_runs[page].result()
    assert result.returncode == 0, (
        f"the code of docs/{page} failed:\n{result.stderr[-6000:]}"
    )


def test_benchmark_results_placeholder_without_results(tmp_path):
    hooks = _load_hooks()
    text, served = hooks.results_report(tmp_path)
    assert "Results are committed under `benchmarks/results/`" in text
    assert served == set()


def test_benchmark_results_report_and_plots(tmp_path):
    hooks = _load_hooks()
    results = tmp_path / "benchmarks" / "results"
    (results / "plots").mkdir(parents=True)
    (results / "regime_map.png").write_bytes(b"png")
    (results / "plots" / "training_poisson2d.png").write_bytes(b"png")
    (results / "results.md").write_text(
        "# gramsolve benchmarks\n\n![map](regime_map.png)\n\n"
        "See [the script](../solve_regimes.py), [jax](https://jax.dev) and "
        "[below](#solve).\n\n```text\n# not a heading [x](y.md)\n```\n"
    )
    text, served = hooks.results_report(tmp_path)
    assert text.startswith("## gramsolve benchmarks")
    assert "![map](benchmarks/results/regime_map.png)" in text
    assert "See the script, [jax](https://jax.dev) and [below](#solve)." in text
    assert "# not a heading [x](y.md)" in text  # code is left alone
    assert (
        "![training poisson2d](benchmarks/results/plots/training_poisson2d.png)" in text
    )
    assert served == {
        Path("benchmarks/results/regime_map.png"),
        Path("benchmarks/results/plots/training_poisson2d.png"),
    }
    (results / "README.md").write_text("# Results\n\nfrom the README\n")
    text, _ = hooks.results_report(tmp_path)
    assert text.startswith("## Results\n\nfrom the README")


def test_benchmark_section_include(tmp_path):
    hooks = _load_hooks()
    (tmp_path / "notes.md").write_text(
        "# Title\n\n## Which error\n\nRMS, see [x](x.py).\n\n### Detail\n\nmore\n\n"
        "## Next\n\nother\n"
    )
    assert hooks.section("notes.md", "Which error", tmp_path) == (
        "RMS, see x.\n\n### Detail\n\nmore"
    )
    with pytest.raises(ValueError, match="no heading"):
        hooks.section("notes.md", "Missing", tmp_path)
    with pytest.raises(FileNotFoundError):
        hooks.section("absent.md", "Which error", tmp_path)
    # the sections the benchmarks page includes exist in the committed README
    page = (DOCS / "benchmarks.md").read_text()
    for path, heading in re.findall(r"<!-- section: ([^#]+)#(.+?) -->", page):
        assert hooks.section(path, heading)
