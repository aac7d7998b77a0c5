"""Extract and run the python code of the documentation pages.

    python docs/scripts/doccode.py PAGE [--figures DIR] [--outputs] [--timing]

runs one page (a path below `docs/`) in this process, as a reader would: figures go
to DIR (default: a temporary folder), `--outputs` writes what each block printed to
`docs/outputs/`, `--check-outputs` fails if what a block printed disagrees with its
recorded output (see `compare_output`), `--timing` reports each block's time on
stderr.

Every fenced block that opens with exactly ```` ```python ```` is code that runs: the
blocks of one page run in order, in one namespace, as a reader would paste them.
Blocks opened any other way (```` ```text ````, ```` ```bash ````, or
```` ```{.python .no-run} ```` for a fragment that is shown but not run) are not run.

A page shows what a block printed by including a captured output file right after
the block:

    ```text
    --8<-- "docs/outputs/<page>-<k>.txt"
    ```

where `<page>` is the page's path below `docs/` with `/` replaced by `-` and without
`.md`, and `<k>` is the block's number on the page (1-based, counting run blocks
only). `make_figures.py` writes those files; `tests/test_docs.py` runs the blocks,
checks that each include sits after the block it names, and compares what each block
prints with its recorded output (`compare_output`). A block whose numbers rounding
moves by more than that allows (a loss at the noise floor after many steps) is
marked with `<!-- output varies -->` on the line before its ```` ```text ```` fence:
its words are compared, not its numbers.

Figures go to the folder in the environment variable `GRAMSOLVE_DOCS_OUT`.
"""

import argparse
import contextlib
import dataclasses
import io
import math
import os
import re
import sys
import tempfile
import time
from pathlib import Path


DOCS = Path(__file__).resolve().parent.parent
OUTPUTS = DOCS / "outputs"
# The pages whose code runs, in the order of the navigation.
# Pages without python blocks are skipped.
PAGES = (
    "index.md",
    "getting-started.md",
    "tutorials/first-step.md",
    "tutorials/preconditioners.md",
    "tutorials/ngd-loop.md",
    "tutorials/variational.md",
    "tutorials/feinn.md",
    "tutorials/regimes.md",
    "tutorials/scaling.md",
    "tutorials/optimistix.md",
    "how-to-choose.md",
    "benchmarks.md",
)
_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_INCLUDE = re.compile(r'--8<-- "docs/outputs/(?P<name>[\w.-]+)-(?P<block>\d+)\.txt"')
# A number, with the unit of time or memory that may follow it: a recorded output
# and a new run may print the same quantity in different units (537 µs, 1.2 ms).
_NUMBER = re.compile(
    r"(?<![\w.])(?P<value>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)"
    r"(?:\s?(?P<unit>µs|ms|s|min|h|d|B|kB|KB|MB|GB|TB|KiB|MiB|GiB|TiB)(?![\w]))?"
)
_UNITS = {
    "µs": ("time", 1e-6),
    "ms": ("time", 1e-3),
    "s": ("time", 1.0),
    "min": ("time", 60.0),
    "h": ("time", 3600.0),
    "d": ("time", 86400.0),
    "B": ("bytes", 1.0),
    "kB": ("bytes", 1e3),
    "KB": ("bytes", 1e3),
    "MB": ("bytes", 1e6),
    "GB": ("bytes", 1e9),
    "TB": ("bytes", 1e12),
    "KiB": ("bytes", 2.0**10),
    "MiB": ("bytes", 2.0**20),
    "GiB": ("bytes", 2.0**30),
    "TiB": ("bytes", 2.0**40),
}
# What a recorded output may differ by from a new run: timings, memory readings,
# iteration counts and errors move between machines and BLAS thread counts, but not
# by an order of magnitude; round-off-level numbers (both below the floor) move
# freely. A stale output (an error recorded before the code changed, say) does not
# pass.
OUTPUT_FACTOR = 10.0
OUTPUT_FLOOR = 1e-10
OUTPUT_VARIES = "<!-- output varies -->"


@dataclasses.dataclass(frozen=True)
class Block:
    page: str
    number: int  # 1-based among the page's run blocks
    line: int  # 1-based line of the opening fence
    end_line: int  # 1-based line of the closing fence
    code: str


def pages_with_code() -> list[str]:
    """The pages that exist and have python blocks to run."""
    return [p for p in PAGES if python_blocks(p)]


def page_name(page: str) -> str:
    return page.removesuffix(".md").replace("/", "-")


def output_path(page: str, number: int) -> Path:
    return OUTPUTS / f"{page_name(page)}-{number}.txt"


def _fences(text: str):
    """(opening line index, closing line index, info string, body lines) of each
    fenced block."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, indent = match["fence"], len(match["indent"])
        for j in range(i + 1, len(lines)):
            closing = _FENCE.match(lines[j])
            if (
                closing
                and closing["fence"][0] == fence[0]
                and len(closing["fence"]) >= len(fence)
                and not closing["info"].strip()
            ):
                body = [line[indent:] for line in lines[i + 1 : j]]
                yield i, j, match["info"].strip(), body
                i = j + 1
                break
        else:
            raise ValueError(f"unclosed code fence at line {i + 1}")


def python_blocks(page: str) -> list[Block]:
    text = (DOCS / page).read_text()
    blocks = []
    for start, end, info, body in _fences(text):
        if info == "python":
            blocks.append(
                Block(page, len(blocks) + 1, start + 1, end + 1, "\n".join(body))
            )
    return blocks


def output_includes(page: str) -> list[tuple[int, str, int]]:
    """(line of the include, page name it names, block number it names) for each
    captured-output include on the page."""
    found = []
    for number, line in enumerate((DOCS / page).read_text().splitlines(), start=1):
        match = _INCLUDE.search(line)
        if match:
            found.append((number, match["name"], int(match["block"])))
    return found


def check_includes(page: str) -> list[str]:
    """Problems with the page's output includes: each must name this page, sit in a
    ```text fence right after the block it names, and point at an existing file."""
    problems = []
    blocks = {b.number: b for b in python_blocks(page)}
    fences = list(_fences((DOCS / page).read_text()))
    for line, name, number in output_includes(page):
        if name != page_name(page):
            problems.append(f"{page}:{line}: includes the output of page {name}")
            continue
        block = blocks.get(number)
        if block is None:
            problems.append(f"{page}:{line}: there is no python block {number}")
            continue
        following = [f for f in fences if f[0] + 1 > block.end_line]
        if not following or not (following[0][0] < line <= following[0][1] + 1):
            problems.append(
                f"{page}:{line}: the output of block {number} (line {block.line}) "
                "must be in the fence right after it"
            )
        elif following[0][2] != "text":
            problems.append(f"{page}:{line}: put captured output in a ```text fence")
        if not output_path(page, number).exists():
            problems.append(f"{page}:{line}: {output_path(page, number)} is missing")
    return problems


def _numbers(text: str) -> tuple[list[str], list[tuple[float, str]]]:
    """The text's lines with each number (and its unit) replaced by a marker of its
    kind and runs of spaces collapsed, and the numbers in base units (seconds,
    bytes) with their kind."""
    found = []

    def mark(match: re.Match) -> str:
        kind, scale = _UNITS.get(match["unit"] or "", ("number", 1.0))
        found.append((float(match["value"]) * scale, kind))
        return f"<{kind}>"

    lines = [" ".join(_NUMBER.sub(mark, line).split()) for line in text.splitlines()]
    return [line for line in lines if line], found


def _close(recorded: float, new: float) -> bool:
    if abs(recorded) < OUTPUT_FLOOR and abs(new) < OUTPUT_FLOOR:
        return True
    if recorded == 0 or new == 0 or (recorded > 0) != (new > 0):
        return False
    return abs(math.log10(abs(new) / abs(recorded))) <= math.log10(OUTPUT_FACTOR)


def compare_output(recorded: str, printed: str, numbers: bool = True) -> list[str]:
    """How a block's new output disagrees with its recorded one: the words must be
    the same (spacing aside), and (with `numbers`) each number within
    `OUTPUT_FACTOR` of the recorded one in base units, unless both are below
    `OUTPUT_FLOOR` in magnitude."""
    recorded_lines, recorded_numbers = _numbers(recorded)
    printed_lines, printed_numbers = _numbers(printed)
    for number, (old, new) in enumerate(
        zip(recorded_lines, printed_lines, strict=False), start=1
    ):
        if old != new:
            return [f"line {number} reads {new!r}, recorded {old!r}"]
    if len(recorded_lines) != len(printed_lines):
        return [f"{len(printed_lines)} lines printed, {len(recorded_lines)} recorded"]
    if not numbers:
        return []
    return [
        f"{kind} {new:.3g} where {old:.3g} was recorded (number {index})"
        for index, ((old, kind), (new, _)) in enumerate(
            zip(recorded_numbers, printed_numbers, strict=True), start=1
        )
        if not _close(old, new)
    ]


def varying_outputs(page: str) -> set[int]:
    """The blocks whose output the page marks as varying from run to run: an
    `OUTPUT_VARIES` comment on the line before the fence that shows it (for numbers
    that rounding moves by more than `OUTPUT_FACTOR`, such as a loss at the noise
    floor after many steps at a tiny damping). Their words are compared, not their
    numbers."""
    lines = (DOCS / page).read_text().splitlines()
    marked = set()
    for line, _, number in output_includes(page):
        opening = line - 1  # 1-based include line; search the fence above it
        while opening > 0 and not _FENCE.match(lines[opening - 1]):
            opening -= 1
        if opening > 1 and lines[opening - 2].strip() == OUTPUT_VARIES:
            marked.add(number)
    return marked


def check_outputs(page: str, printed: dict[int, str]) -> list[str]:
    """Where the page's recorded outputs disagree with what its blocks printed now
    (`compare_output`; words only for `varying_outputs`); a block that prints while
    nothing of it is recorded is fine only if the page does not show it."""
    problems = []
    shown = {number for _, _, number in output_includes(page)}
    varying = varying_outputs(page)
    for number, text in printed.items():
        path = output_path(page, number)
        if number not in shown:
            continue
        if not path.exists():
            problems.append(f"{page} block {number}: {path.name} is missing")
            continue
        found = compare_output(path.read_text(), text, numbers=number not in varying)
        problems += [f"{page} block {number} ({path.name}): {p}" for p in found]
    return problems


def run_page(page: str, figures: Path, *, timing: bool = False) -> dict[int, str]:
    """Runs the page's python blocks in order in one namespace, with figures going to
    `figures`. Returns what each block printed. Tracebacks name the page and line."""
    os.environ["GRAMSOLVE_DOCS_OUT"] = str(figures)
    namespace: dict = {"__name__": "__docs__"}
    printed = {}
    for block in python_blocks(page):
        # Pad with newlines so that line numbers in tracebacks are the page's own.
        code = compile("\n" * block.line + block.code, f"docs/{page}", "exec")
        buffer = io.StringIO()
        start = time.perf_counter()
        with contextlib.redirect_stdout(buffer):
            exec(code, namespace)
        printed[block.number] = buffer.getvalue()
        if timing:
            print(
                f"{page} block {block.number} (line {block.line}): "
                f"{time.perf_counter() - start:.1f} s",
                file=sys.stderr,
            )
    return printed


def write_outputs(page: str, printed: dict[int, str]) -> None:
    """Stores what the blocks printed, for the page's output includes; removes stale
    files of blocks that print nothing."""
    OUTPUTS.mkdir(exist_ok=True)
    for number, text in printed.items():
        path = output_path(page, number)
        if text:
            path.write_text(text)
        elif path.exists():
            path.unlink()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the python code of a docs page.")
    parser.add_argument("page", help="a page below docs/, e.g. tutorials/first-step.md")
    parser.add_argument("--figures", type=Path, default=None)
    parser.add_argument("--outputs", action="store_true")
    parser.add_argument("--check-outputs", action="store_true")
    parser.add_argument("--timing", action="store_true")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        figures = args.figures
        if figures is None:
            figures = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        printed = run_page(args.page, figures, timing=args.timing)
    if args.outputs:
        write_outputs(args.page, printed)
    if args.check_outputs:
        problems = check_outputs(args.page, printed)
        if problems:
            sys.exit(
                "the recorded outputs disagree with what the code prints now "
                f"(rerun `python docs/scripts/make_figures.py {args.page}`):\n"
                + "\n".join(problems)
            )


if __name__ == "__main__":
    main()
