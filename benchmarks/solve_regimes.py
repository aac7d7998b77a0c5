"""Every solve regime over a grid of (n, m) on 2D Poisson PINNs: time, memory, error,
Auto's choice and its time over the fastest regime's; Auto against a hand-written
dense Woodbury step. The same suite as `python -m gramsolve bench --suite solve`.

    python benchmarks/solve_regimes.py [--quick] [--out bench-out]
"""

import sys

from gramsolve.bench import main


if __name__ == "__main__":
    main(["--suite", "solve", *sys.argv[1:]])
