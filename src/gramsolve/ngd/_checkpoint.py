"""Checkpoints: a pytree of arrays and a JSON record in one file, replaced atomically."""

import json
import os
import pathlib
import stat
import tempfile
from collections.abc import Callable
from typing import Any, BinaryIO

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import PyTree


def _is_typed_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _keys_as_data(tree: PyTree) -> PyTree:
    # `np.save` cannot write typed keys (`jax.random.key`); their raw bits can.
    return jtu.tree_map(
        lambda x: jax.random.key_data(x) if _is_typed_key(x) else x, tree
    )


def _keys_like(tree: PyTree, like: PyTree) -> PyTree:
    return jtu.tree_map(
        lambda x, y: (
            jax.random.wrap_key_data(x, impl=jax.random.key_impl(y))
            if _is_typed_key(y)
            else x
        ),
        tree,
        like,
    )


def save_checkpoint(
    path: str | os.PathLike, tree: PyTree, record: dict[str, Any]
) -> None:
    """Writes `record` (anything `json` can write) and the arrays of `tree` to `path`,
    atomically: the file is written beside `path`, flushed to disk, then renamed over
    it, so a kill at any moment leaves either the previous checkpoint or the new one,
    never a torn file.

    The format is equinox's documented one for a model with hyperparameters: one line
    of JSON, then `equinox.tree_serialise_leaves` of `tree` (its array leaves, in
    order; non-array leaves are not written and come back from `like` when loading).
    Read it back with [`gramsolve.ngd.load_checkpoint`][].

    **Arguments:**

    - `path`: the file to write (its folder must exist).
    - `tree`: a pytree of arrays (parameters, optimizer state, random keys, ...);
      typed keys (`jax.random.key`) are written as their raw bits.
    - `record`: a JSON-serialisable dict (a step counter, a history, ...).

    !!! Example

        ```python
        gs.ngd.save_checkpoint("run.eqx", (params, state), {"step": 10})
        (params, state), record = gs.ngd.load_checkpoint("run.eqx", (params, state))
        ```
    """
    header = (json.dumps(record) + "\n").encode()

    def write(file):
        file.write(header)
        eqx.tree_serialise_leaves(file, _keys_as_data(tree))

    write_atomically(path, write)


def write_atomically(
    path: str | os.PathLike, write: Callable[[BinaryIO], object]
) -> None:
    """Calls `write` on a binary file that replaces `path` only once it is complete.

    The file gets a name of its own in `path`'s folder, so two writers of one path
    never share a half-written file and a kill leaves the old `path` whole; it is
    removed if `write` fails. It keeps the mode of the file it replaces (a new one
    gets 0644).
    """
    path = pathlib.Path(path)
    descriptor, partial = tempfile.mkstemp(
        dir=path.parent, prefix=path.name + ".", suffix=".partial"
    )
    try:
        # mkstemp's 0600 would make the file private: keep the mode of the file
        # replaced, else the usual 0644 (reading the umask would mean changing it,
        # for the whole process).
        mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644
        os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
    except BaseException:
        pathlib.Path(partial).unlink(missing_ok=True)
        raise


def load_checkpoint(
    path: str | os.PathLike, like: PyTree
) -> tuple[PyTree, dict[str, Any]]:
    """Reads a file written by [`gramsolve.ngd.save_checkpoint`][].

    **Arguments:**

    - `path`: the checkpoint file.
    - `like`: a pytree with the structure, shapes and dtypes of the saved `tree` (for
      example the freshly initialised parameters and optimizer state); its non-array
      leaves are kept.

    **Returns:**

    `(tree, record)`: the saved arrays in the structure of `like`, and the saved
    JSON record.

    Raises `ValueError` when the file does not match `like` (another network, another
    optimizer, other point counts) or is not a checkpoint.
    """
    path = pathlib.Path(path)
    with open(path, "rb") as file:
        try:
            record = json.loads(file.readline().decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path} is not a gramsolve checkpoint") from error
        try:
            tree = eqx.tree_deserialise_leaves(file, _keys_as_data(like))
        except (RuntimeError, ValueError, OSError, EOFError) as error:
            raise ValueError(
                f"{path} does not match this run (another network, optimizer state or "
                f"number of points?): {error}"
            ) from error
    return _keys_like(tree, like), record
