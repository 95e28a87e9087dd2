"""The job's scratch storage: each table's coded blocks and the population's PCA coordinates, one file per
block in the work folder (local or object storage), read back by every later pass.

Nothing large stays in cluster memory between passes: a pass loads each block with a fresh task, so memory
does not grow with the table, and a killed run resumes from the files (``segmentation.checkpoint``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

import dask
import dask.array as da
import fsspec
import numpy as np
from distributed import as_completed
from fsspec.core import url_to_fs

from .codes import load_block, read_into

# k-means reads coordinates in chunks of about this size (``Coordinates.array``).
KMEANS_CHUNK_BYTES = 32 * 2**20


def scratch_folder(work: str, name: str, storage_options: dict) -> str:
    """``work/name``, created (object stores need nothing created)."""
    folder = f"{str(work).rstrip('/')}/{name}"
    fs, path = url_to_fs(folder, **storage_options)
    fs.makedirs(path, exist_ok=True)
    return folder


def block_paths(folder: str, n: int, suffix: str = "block") -> list[str]:
    """The paths of ``n`` numbered block files in ``folder``, in row order."""
    return [f"{folder}/{i:05d}.{suffix}" for i in range(n)]


@dataclass
class Blocks:
    """A table's coded blocks (``codes.save_block`` files) in the scratch folder, in row order."""

    paths: list[str]
    rest_dtypes: dict
    storage_options: dict

    def load(self) -> list:
        """One lazy load per block (fresh tasks: every pass reads the files again, nothing stays in memory)."""
        return [
            dask.delayed(load_block, pure=False)(p, self.rest_dtypes, self.storage_options)
            for p in self.paths
        ]

    def map(self, function: Callable, *args, each: list[tuple] | None = None) -> list:
        """One lazy ``function(*args, block, *each[i])`` per block, loading the block in the same task.

        A pass is then one task per block, as the read pass is: a loaded block (6 MB) or what a first
        step makes of it (30 MB of standardized features) is never sent to the other worker nor held
        waiting for the next step. ``args`` may hold shared ``Delayed`` objects (the model)."""
        each = each if each is not None else [()] * len(self.paths)
        return [
            dask.delayed(_on_block, pure=False)(
                function, path, self.rest_dtypes, self.storage_options, args, extra
            )
            for path, extra in zip(self.paths, each, strict=True)
        ]


def _on_block(function: Callable, path: str, rest_dtypes: dict, storage_options: dict, args, extra):
    return function(*args, load_block(path, rest_dtypes, storage_options), *extra)


@dataclass
class Coordinates:
    """The population's PCA coordinates, one ``.npy`` file per coded block in the scratch folder (block i
    holds the kept rows of coded block i).

    Every later pass reads them back (k-means iterations included): the coordinates stay on disk (or in
    object storage), never in cluster memory, whatever the size of the table.
    """

    paths: list[str]
    rows: list[int]
    storage_options: dict

    def array(self, n_components: int, target_bytes: int | None = None) -> da.Array:
        """A float32 Dask array: one chunk per file, or per run of files of about ``target_bytes``.

        k-means takes the larger chunks: each of its passes is several small tasks per chunk, and with
        ~15 MB chunks the scheduling cost about a third of an iteration at the real size (1.4-1.8 s vs
        1.0-1.2 s with ~60 MB chunks). ``KMEANS_CHUNK_BYTES`` is 32 MB, not 64: dask-ml's distance step
        copied each chunk to float64, and 64 MB chunks raised the job's peak from 2.08 to 2.37 GiB (measured
        before the Lloyd passes became the project's own, which convert 2,048 rows at a time).
        """
        per_file = max(self.rows, default=1) * n_components * 4
        group = max(1, (target_bytes or 0) // max(per_file, 1))
        name = f"reduced-{group}-{dask.base.tokenize(self.paths)}"
        graph, chunks = {}, []
        for i in range(0, len(self.paths), group):
            graph[(name, len(chunks), 0)] = (load_arrays, self.paths[i : i + group], self.storage_options)
            chunks.append(sum(self.rows[i : i + group]))
        return da.Array(graph, name, chunks=(tuple(chunks), (n_components,)), dtype=np.float32)


def block_array(blocks: list, rows: list[int], n_columns: int) -> da.Array:
    """A row-blocked float32 Dask array of lazy row blocks (``Delayed``), with their known row counts."""
    arrays = [
        da.from_delayed(block, shape=(n, n_columns), dtype=np.float32)
        for block, n in zip(blocks, rows, strict=True)
    ]
    return da.concatenate(arrays, axis=0)


def save_array(array: np.ndarray, path: str, storage_options: dict, rows: np.ndarray) -> np.ndarray:
    """Write ``array`` to ``path``; return its ``rows``."""
    with fsspec.open(path, "wb", **storage_options) as handle:
        np.save(handle, np.asarray(array), allow_pickle=False)
    return array[rows]


def _reduce_and_save(model, block, path: str, storage_options: dict, rows: np.ndarray) -> np.ndarray:
    return save_array(model.reduced_block(block), path, storage_options, rows)


def load_arrays(paths: list[str], storage_options: dict) -> np.ndarray:
    """The ``.npy`` files at ``paths`` (same dtype and columns, C order), concatenated by rows.

    Each file's data is read straight into its rows of the one result: ``np.load`` of an fsspec file
    reads in 256 KB pieces and ``np.concatenate`` copies again, 4.7x slower at the real size (0.63 s vs
    0.13 s a pass over 1 GB of coordinates, one core), and every k-means iteration is such a pass.
    """
    with ExitStack() as stack:
        handles = [stack.enter_context(fsspec.open(path, "rb", **storage_options)) for path in paths]
        headers = [_npy_header(handle, path) for handle, path in zip(handles, paths, strict=True)]
        (_, columns, dtype), rows = headers[0], [shape[0] for shape, _, _ in headers]
        out = np.empty((sum(rows), *columns), dtype=dtype)
        start = 0
        for handle, path, (shape, _, file_dtype), n in zip(handles, paths, headers, rows, strict=True):
            if shape[1:] != columns or file_dtype != dtype:
                raise ValueError(f"{path}: {file_dtype}{shape}, not {dtype}(n, {columns}) like {paths[0]}")
            if n:  # a block whose rows were all set aside holds none
                read_into(handle, memoryview(out[start : start + n]).cast("B"), path)
            start += n
    return out


def _npy_header(handle, path: str) -> tuple[tuple, tuple, np.dtype]:
    """(shape, shape without rows, dtype) from an ``.npy`` file's header; the handle is left at its data."""
    version = np.lib.format.read_magic(handle)
    read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version not in read:
        raise ValueError(f"{path}: .npy format version {version} is not read here")
    shape, fortran_order, dtype = read[version](handle)
    if fortran_order or dtype.hasobject or len(shape) < 1:
        raise ValueError(f"{path}: not a C-ordered numeric array")
    return shape, shape[1:], dtype


def gather_rows(client, pieces: list, counts: list[int], n_columns: int) -> np.ndarray:
    """Compute ``pieces`` (float32 row blocks of ``counts`` rows) into one array on the client, each copied
    into place as it arrives and then released, so the rows are held once."""
    out = np.empty((sum(counts), n_columns), dtype=np.float32)
    starts = np.cumsum([0, *counts])
    futures = client.compute(pieces)
    position = {future.key: i for i, future in enumerate(futures)}
    for future, piece in as_completed(futures, with_results=True):
        i = position[future.key]
        out[starts[i] : starts[i + 1]] = piece
        future.release()
    return out


def call_method(owner, method: str, *args):
    """``owner.method(*args)``: a task that calls a method of a shared object (``dask.delayed(owner,
    traverse=False)``), so the object is sent to each worker once, not with every task."""
    return getattr(owner, method)(*args)


def write_coordinates(client, model, blocks: Blocks, coordinates: Coordinates, taken: list) -> np.ndarray:
    """Write ``model.reduced_block`` of each coded block to ``coordinates``' files; return the rows
    ``taken`` (one index array per block) of them, gathered on the client as the blocks are written
    (k-means' seeding sample, without a pass of its own)."""
    storage = coordinates.storage_options
    each = [(path, storage, t) for path, t in zip(coordinates.paths, taken, strict=True)]
    writes = blocks.map(_reduce_and_save, dask.delayed(model, traverse=False), each=each)
    return gather_rows(client, writes, [len(t) for t in taken], model.pca.n_components_)
