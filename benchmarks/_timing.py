"""The benchmark scripts' timing helpers live in the package, shared with
`python -m gramsolve bench`."""

from gramsolve.bench import (
    median_seconds as median_seconds,
    print_table as print_table,
)
