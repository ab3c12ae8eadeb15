"""The region-of-interest map's context coding (format version 4): exact round trips, a small stream for a
leaf-shaped map, and one clear error for anything the encoder would not have written."""

import zlib

import numpy as np
import pytest

from helpers.codec import map_coding
from helpers.codec.errors import CodecError


def _blob(rows: int, cols: int) -> np.ndarray:
    """A leaf-like map: an ellipse of 255 on 0."""
    r, c = np.mgrid[:rows, :cols]
    return np.where(((r - rows / 2) / (rows / 3)) ** 2 + ((c - cols / 2) / (cols / 2.5)) ** 2 < 1, 255, 0)


@pytest.mark.parametrize("seed", range(40))
def test_any_map_round_trips(seed):
    rng = np.random.default_rng(seed)
    rows, cols = rng.integers(1, 14, 2)
    palette = rng.choice(256, rng.integers(1, 7), replace=False)
    weights = palette[rng.integers(0, len(palette), (rows, cols))].astype(np.uint8)
    if seed % 3 == 0:
        weights = np.sort(weights, axis=int(seed % 2))  # runs, as real maps have
    stream = map_coding.encode(weights)
    assert np.array_equal(map_coding.decode(stream, rows, cols), weights)


def test_every_one_of_256_weights_round_trips():
    weights = np.arange(256, dtype=np.uint8).reshape(16, 16)[::-1]
    assert np.array_equal(map_coding.decode(map_coding.encode(weights), 16, 16), weights)


def test_a_leaf_shaped_map_costs_a_fraction_of_deflate():
    weights = _blob(16, 16).astype(np.uint8)
    stream = map_coding.encode(weights)
    assert len(stream) < len(zlib.compress(weights.tobytes(), 9)) / 2
    lesions = weights.copy()
    lesions[6:9, 5:8] = 153
    assert len(map_coding.encode(lesions)) < len(zlib.compress(lesions.tobytes(), 9)) / 2


def test_the_context_counts_add_up():
    weights = _blob(12, 20).astype(np.uint8)
    counts = map_coding.context_counts(weights)
    assert counts[: len(map_coding.PRIOR)].sum() == weights.size  # one "differs from W" decision per position
    assert counts[-1].sum() == 0  # two weights: a change is always to the other one


def test_what_the_encoder_would_not_write_is_refused():
    weights = _blob(9, 11).astype(np.uint8)
    stream = map_coding.encode(weights)
    rng = np.random.default_rng(0)
    bad = [b"", b"\x05\x00", bytes([1, 200, 100]) + stream[3:], stream + b"\x00", stream + b"\x01"]
    for data in bad:
        with pytest.raises(CodecError, match="corrupted ROI map"):
            map_coding.decode(data, 9, 11)
    refused = 0
    for _ in range(300):  # random bytes: refused, unless they happen to be a valid stream (e.g. b"\0\x07")
        data = bytes(rng.integers(0, 256, rng.integers(1, 30)).astype(np.uint8))
        try:
            assert map_coding.encode(map_coding.decode(data, 9, 11)) == data
        except CodecError as exc:
            assert str(exc).startswith("corrupted ROI map")
            refused += 1
    assert refused > 250


def test_a_forged_size_ends_in_an_error_not_a_long_decode():
    """A map read as a far larger grid than it codes runs out of bytes within a few hundred decisions per byte
    (the decoder never reads past what the encoder wrote)."""
    stream = map_coding.encode(_blob(16, 16).astype(np.uint8))
    with pytest.raises(CodecError, match="cut short"):
        map_coding.decode(stream, 100_000, 100_000)  # 10^10 positions: hours, and more memory than there is


def test_the_shipped_prior_is_what_the_training_maps_give():
    from helpers import paths
    from helpers.data.dataset import read_manifest, split_paths
    from helpers.study.roi import map_context_prior

    root = paths.data_dir()
    if not root.is_dir():
        pytest.skip(f"PlantVillage not found at {root} (set DATA_DIR)")
    train = [p for p in split_paths(read_manifest(paths.MANIFEST), "train", root) if "Potato" not in str(p)]
    prior, equals_n = map_context_prior(train[:: len(train) // 300][:300])
    assert (prior, equals_n) == (list(map_coding.PRIOR), map_coding.PRIOR_EQUALS_N)
