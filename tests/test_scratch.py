"""Scratch storage: coordinate blocks round-trip exactly, chunking by size keeps every row in order, and the
seeding sample gathered while writing is the rows asked for."""

import numpy as np
import pytest
from distributed import Client, LocalCluster

from segmentation.scratch import (
    Coordinates,
    block_paths,
    gather_rows,
    load_arrays,
    save_array,
    scratch_folder,
)


@pytest.fixture
def written(tmp_path):
    rng = np.random.default_rng(0)
    rows = [5, 0, 7, 3]  # an empty block too: every row of a coded block may be set aside
    arrays = [rng.normal(size=(n, 4)).astype(np.float32) for n in rows]
    paths = block_paths(scratch_folder(str(tmp_path), "reduced", {}), len(rows), "npy")
    for array, path in zip(arrays, paths, strict=True):
        save_array(array, path, {}, np.arange(0))
    return Coordinates(paths, rows, {}), np.concatenate(arrays)


def test_block_paths_are_numbered_in_row_order(tmp_path):
    assert block_paths("s3://b/w/population", 2) == [
        "s3://b/w/population/00000.block",
        "s3://b/w/population/00001.block",
    ]


@pytest.mark.parametrize("target_bytes", [None, 1, 5 * 4 * 4, 10**9])
def test_coordinates_read_back_whole_in_any_chunking(written, target_bytes):
    coordinates, expected = written
    array = coordinates.array(4, target_bytes)
    assert array.shape == expected.shape and array.dtype == np.float32
    np.testing.assert_array_equal(array.compute(), expected)
    if target_bytes is None:
        assert array.chunks[0] == tuple(coordinates.rows)
    if target_bytes == 10**9:
        assert array.numblocks[0] == 1


def test_load_arrays_concatenates_by_rows(written):
    coordinates, expected = written
    np.testing.assert_array_equal(load_arrays(coordinates.paths, {}), expected)


def test_gather_rows_puts_every_piece_in_its_place():
    pieces = [np.full((n, 2), i, dtype=np.float32) for i, n in enumerate([3, 1, 4])]
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            import dask

            gathered = gather_rows(client, [dask.delayed(p.copy)() for p in pieces], [3, 1, 4], 2)
    np.testing.assert_array_equal(gathered, np.concatenate(pieces))


def test_load_arrays_fills_from_short_reads_and_refuses_files_that_do_not_match(
    written, tmp_path, monkeypatch
):
    """Object storage may hand back fewer bytes than asked; files of other columns or dtype are refused
    by name, and a truncated file too."""
    import io

    import fsspec

    from segmentation import scratch

    class Trickle(io.BytesIO):
        def readinto(self, buffer):
            return super().readinto(memoryview(buffer)[:5])  # at most 5 bytes a call

    opened = fsspec.open

    class TrickleOpen:
        def __init__(self, path, mode, **options):
            self.path = path

        def __enter__(self):
            with opened(self.path, "rb") as handle:
                return Trickle(handle.read())

        def __exit__(self, *exc):
            return False

    coordinates, expected = written
    monkeypatch.setattr(scratch.fsspec, "open", TrickleOpen)
    np.testing.assert_array_equal(load_arrays(coordinates.paths, {}), expected)
    monkeypatch.undo()
    other = str(tmp_path / "other.npy")
    np.save(other, np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="other.npy"):
        load_arrays([coordinates.paths[0], other], {})
    truncated = str(tmp_path / "truncated.npy")
    with open(coordinates.paths[0], "rb") as handle:
        data = handle.read()
    with open(truncated, "wb") as handle:
        handle.write(data[:-4])
    with pytest.raises(ValueError, match="truncated.npy: ends 4 bytes early"):
        load_arrays([truncated], {})
