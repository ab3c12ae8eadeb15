"""One codec path for every architecture: each bake-off candidate, shipped with small random weights, writes
``.leaf`` files through ``python -m helpers compress`` and reads them back through ``decompress``, with the stream
count its tile codec implies, the symbol CRC checked, and the same pixels at one and two threads."""

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.codec.checkpoints import load_model
from helpers.codec.container import pack, parse
from helpers.codec.errors import CodecError
from helpers.codec.leaf_codec import LeafCodec
from helpers.codec.tiling import coding_tiles
from helpers.commands import main
from helpers.training.candidates import CANDIDATES, candidate
from helpers.training.shipping import shipped

LAMBDAS = (0.002, 0.02)
SIZE = (72, 1040)  # two coding tiles across (64 latents = 1024 px each)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[: SIZE[0], : SIZE[1]]
    img = np.stack([(xx * 0.2) % 256, (yy * 3) % 256, 128 + 60 * np.sin(xx / 9)], -1) + rng.normal(
        0, 8, (*SIZE, 3)
    )
    path = tmp_path_factory.mktemp("src") / "leaf.png"
    Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(path)
    return path


def _checkpoint(name: str, folder) -> str:
    torch.manual_seed(0)
    path = folder / f"{name}.pth.tar"
    torch.save(shipped(candidate(name, LAMBDAS).eval(), f"test-{name}"), path)
    return str(path)


def _decode(leaf_file, png, checkpoint, threads: int) -> np.ndarray:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert (
            main(["decompress", str(leaf_file), "-o", str(png), "--checkpoint", checkpoint, "--force"]) == 0
        )
    finally:
        torch.set_num_threads(before)
    return np.asarray(Image.open(png))


@pytest.mark.parametrize("name", list(CANDIDATES))
def test_every_candidate_ships_through_the_codec(name, source, tmp_path):
    checkpoint = _checkpoint(name, tmp_path)
    model, ckpt = load_model(checkpoint)
    assert ckpt["architecture"] == model.architecture == "composed" and model.config()["name"] == name
    leaf_file = tmp_path / "x.leaf"
    assert (
        main(["compress", str(source), "-o", str(leaf_file), "--level", "2", "--checkpoint", checkpoint]) == 0
    )
    header = parse(leaf_file.read_bytes())
    assert header.model_name == f"test-{name}"
    tiles = len(list(coding_tiles(*SIZE)))
    assert tiles == 2 and len(header.streams) == 1 + model.tile_codec.streams_per_tile * tiles
    one, two = (_decode(leaf_file, tmp_path / f"{n}.png", checkpoint, n) for n in (1, 2))
    assert one.shape == (*SIZE, 3) and np.array_equal(one, two)
    # The symbol CRC is checked: the same streams under another CRC are refused.
    forged = pack(header.model_name, header.weights_hash, header.level, header.colour, header.height,
                  header.width, header.symbols_crc ^ 1, header.streams)  # fmt: skip
    with pytest.raises(CodecError, match="symbol checksum"):
        LeafCodec(checkpoint).decode(forged)


@pytest.mark.parametrize("name", ["channel", "elic"])
def test_a_garbled_context_stream_is_an_error_not_a_wrong_image(name, source, tmp_path):
    checkpoint = _checkpoint(name, tmp_path)
    codec = LeafCodec(checkpoint)
    rgb = np.asarray(Image.open(source))[:, :256]
    header = parse(codec.encode(rgb, 2))
    rng = np.random.default_rng(1)
    for i in range(1, len(header.streams)):
        stream = bytearray(header.streams[i])
        stream[rng.integers(len(stream))] ^= 0x5A
        streams = list(header.streams)
        streams[i] = bytes(stream)
        forged = pack(header.model_name, header.weights_hash, header.level, header.colour, header.height,
                      header.width, header.symbols_crc, streams)  # fmt: skip
        try:
            out = codec.decode(forged)
        except CodecError:
            continue
        assert np.array_equal(out, codec.decode(pack(*_fields(header), header.streams)))


def _fields(h):
    return h.model_name, h.weights_hash, h.level, h.colour, h.height, h.width, h.symbols_crc
