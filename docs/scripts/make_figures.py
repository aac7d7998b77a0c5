"""Regenerate the figures and captured outputs shown in the docs.

    python docs/scripts/make_figures.py [PAGE ...]

Runs the python code of each page (default: every page with code), each in a fresh
process, with the figures written to `docs/images/` and what each block printed to
`docs/outputs/`, so the site shows exactly what its code produces. Run it after
changing a page's code, or a library change that moves what a page prints, then
commit the images and outputs: `tests/test_docs.py` fails where a recorded output no
longer matches (`doccode.compare_output`). Pages run two at a time.
"""

import concurrent.futures
import os
import subprocess
import sys
from pathlib import Path

import doccode


IMAGES = doccode.DOCS / "images"
MAX_IMAGE_BYTES = 200_000


def run(page: str) -> tuple[str, subprocess.CompletedProcess]:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    command = [
        sys.executable,
        str(Path(doccode.__file__)),
        page,
        "--figures",
        str(IMAGES),
        "--outputs",
        "--timing",
    ]
    return page, subprocess.run(command, env=env, capture_output=True, text=True)


def main() -> None:
    pages = sys.argv[1:] or doccode.pages_with_code()
    IMAGES.mkdir(exist_ok=True)
    failed = False
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for page, result in pool.map(run, pages):
            print(result.stderr, end="")
            if result.returncode != 0:
                failed = True
                print(f"FAILED: {page}")
    for image in sorted(IMAGES.glob("*.png")):
        size = image.stat().st_size
        flag = "  (over the limit: shrink it)" if size > MAX_IMAGE_BYTES else ""
        print(f"{image.relative_to(doccode.DOCS.parent)}: {size / 1000:.0f} kB{flag}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
