"""``LeafCodec``: ``encode(image) -> bytes`` and ``decode(bytes) -> image`` of ``.leaf`` files (and the rate search,
``encode_to_rate``), for any model that implements ``helpers.codec.models.CodingModel``. Files on disk are
``helpers.codec.files``'. The transforms run on tiles (``helpers.codec.tiling``) in memory
bounded by the tile (``helpers.codec.budget``); the latent is coded by the model's tile codec
(``helpers.codec.latent_coding``); the container is ``helpers.codec.container``'s.

Decoding trusts nothing in a file: the checksum catches accidental damage, and because it can be recomputed,
the payload is also checked on its own terms. The stream count must be the one the image size implies, and
every rANS stream must be whole 32-bit words (at least two); CompressAI's rANS decoder does no bounds checking,
so each stream is handed to it followed by zero words (``latent_coding.guarded``) and a garbled stream reads zeros instead of
running off its buffer. Decoded values beyond ``LATENT_LIMIT`` are refused (CompressAI's rANS *encoder* loops
forever on values of 2^27 or more, and garbage can decode to such values). Every stream must be exactly what the
encoder writes for the symbols it decoded to (re-encoded and compared; a few percent of the decode time), and
the symbols must match the symbol CRC. Before anything is allocated, the image size is checked against the pixel
limit and the estimated memory against the memory budget. A garbled payload therefore ends in a CodecError and
a too-large image in a ResourceError, never in a crash, a hang, a silently wrong image or a memory blow-up.
(Header fields such as the level are protected by the checksum only: a deliberately forged header with a
recomputed checksum is out of scope, except that it can never make the decoder exceed its budgets.)
"""

from __future__ import annotations

import contextlib
import zlib
from pathlib import Path

import numpy as np
import torch

from helpers.codec import budget, level_search, roi, tiling
from helpers.codec.checkpoints import load_model
from helpers.codec.container import LEVEL_UNITS, Header, level_units, pack, parse, tile_count
from helpers.codec.errors import CodecError, DataError, ResourceError
from helpers.codec.imageio import COLOUR_NAMES, COLOUR_RGB, DEFAULT_MAX_PIXELS, check_pixels
from helpers.codec.latent_coding import compress_hyper, decompress_hyper, is_allocation_failure
from helpers.codec.models import level_index, single_thread


@contextlib.contextmanager
def _allocation(verb: str, height: int, width: int):
    """A failed allocation ends in a one-line ResourceError (a batch goes on with the next file)."""
    try:
        yield
    except (MemoryError, RuntimeError) as exc:
        if not is_allocation_failure(exc):
            raise
        raise ResourceError(
            f"not enough memory to {verb} a {width}x{height} image (the --max-memory budget is above what "
            "this machine has; lower it to be refused before trying)"
        ) from None


# ----- the codec ------------------------------------------------------------------------------------------------
BACKENDS = ("torch", "onnx")


class LeafCodec:
    """Learned codec with quality levels 1..K (low to high). ``encode(rgb, level, colour) -> bytes`` and
    ``decode(bytes) -> rgb`` work on uint8 RGB arrays; ``level`` may be fractional (a 1/256 step between levels).
    The public methods check a level once (``check_level``); the model's 0-based gain ``index`` appears only
    where a gain is applied (``models.level_index``).

    ``backend="onnx"`` runs the synthesis ``g_s`` in ONNX Runtime (``helpers.codec.onnx_runtime``; same files, pixels within
    one grey level of the PyTorch backend's); everything else, and encoding, runs in PyTorch. ``max_pixels`` and
    ``max_memory`` (bytes, see ``helpers.codec.budget``) refuse images beyond them before anything is allocated."""

    name = "ours"

    def __init__(self, checkpoint: str | Path | None = None, backend: str = "torch",
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, max_memory: int | None = budget.DEFAULT_MAX_MEMORY):  # fmt: skip
        if backend not in BACKENDS:
            raise CodecError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
        self.model, ckpt = load_model(checkpoint)
        self.model_name, self.step = ckpt["name"], ckpt.get("step") or 0
        self.hash = bytes.fromhex(ckpt["weights_sha256"])[:8]
        self.levels = list(range(1, self.model.num_levels + 1))
        # Built now, not by two tile workers at once.
        _ = self.model.h_s64
        self.g_a = self.model.coding_transform("g_a")
        self.tile_codec = self.model.tile_codec
        self.backend = backend
        self.max_pixels, self.max_memory = max_pixels, max_memory
        if backend == "onnx":
            from helpers.codec.onnx_runtime import OnnxSynthesis

            self.g_s = OnnxSynthesis(self.model, ckpt["weights_sha256"])
        else:
            self.g_s = self.model.coding_transform("g_s")

    @property
    def default_level(self) -> int:
        return self.levels[len(self.levels) // 2]

    def check_level(self, level: float | None) -> int | float:
        """A trained level 1..K (an int), or a fractional level between them on the file's 1/256 grid; None: the
        default level. CodecError for anything else."""
        if level is None:
            return self.default_level
        ok = isinstance(level, int | float | np.integer | np.floating) and np.isfinite(level)
        if (
            not ok
            or level_units(level) != level * LEVEL_UNITS
            or not self.levels[0] <= level <= self.levels[-1]
        ):
            raise CodecError(
                f"unknown quality level {level}; valid levels are {', '.join(map(str, self.levels))} "
                f"(or a multiple of 1/{LEVEL_UNITS} between {self.levels[0]} and {self.levels[-1]})"
            )
        return int(level) if float(level).is_integer() else float(level)

    def check_size(self, width: int, height: int, decode: bool, latents: int = 1) -> None:
        """ResourceError before any allocation if the image exceeds the pixel limit or the memory budget
        (``latents``: float32 latents held at once; 2 while several levels are tried)."""
        verb = "decode" if decode else "encode"
        check_pixels(width, height, self.max_pixels, f"a {width}x{height} image")
        need = budget.estimate(height, width, self.model.M, self.model.N, tiling.workers(), decode, latents)
        budget.check(height, width, need, self.max_memory, verb)

    # ----- encoding -----------------------------------------------------------------------------------------
    def encode(self, rgb: np.ndarray, level: float | None = None, colour: int = COLOUR_RGB,
               roi_weights: np.ndarray | None = None, background: float | None = None) -> bytes:  # fmt: skip
        """A ``.leaf`` file of uint8 RGB ``rgb`` (H, W, 3) at ``level`` (default: the middle level).

        ``roi_weights``: a region of interest (``helpers.codec.roi``), one weight in [0, 1] per latent position
        (``tiling.latent_size``; ``helpers.codec.importance`` makes them): weight 1 is coded at ``level``, 0 at
        ``background`` (default ``roi.DEFAULT_BACKGROUND``, never above ``level``)."""
        return self.encode_levels(rgb, [level], colour, roi_weights, background)[0]

    def encode_levels(self, rgb: np.ndarray, levels, colour: int = COLOUR_RGB,
                      roi_weights: np.ndarray | None = None, background: float | None = None) -> list[bytes]:  # fmt: skip
        """One file per level; the analysis transform (most of the encoding time) runs once for all of them."""
        levels = [self.check_level(level) for level in levels]
        rgb = self._checked_image(rgb, colour)
        region = self._region(rgb, roi_weights, background)
        h, w = rgb.shape[:2]
        self.check_size(w, h, decode=False, latents=1 + (len(levels) > 1))
        n = tiling.workers()
        with _allocation("encode", h, w), single_thread(), torch.no_grad():
            y = tiling.analyse(self.g_a, rgb, self.model.M, n)
            files = []
            for i, level in enumerate(levels):
                # The last level scales y in place: one latent less at the peak (128 MB for 64 MP).
                scaled = self._scaled(y, level, in_place=i == len(levels) - 1)
                files.append(self._encode_latent(scaled, level, colour, h, w, n, region))
                del scaled
            return files

    def _region(self, rgb: np.ndarray, weights, background) -> tuple[np.ndarray, float] | None:
        """The checked u8 weights and background level of a region of interest (None: uniform quality)."""
        if weights is None:
            return None
        if not self.tile_codec.supports_roi:
            raise CodecError(f"model {self.model_name!r} has a context entropy model; region-of-interest coding "
                             "needs a mean-scale hyperprior (every shipped model has one)")  # fmt: skip
        shape = tiling.latent_size(*rgb.shape[:2])
        if np.shape(weights) != shape:
            raise CodecError(f"the ROI map has {np.shape(weights)} weights; a {rgb.shape[1]}x{rgb.shape[0]} image "
                             f"needs one per 16x16 block of its padded size, {shape}")  # fmt: skip
        background = roi.DEFAULT_BACKGROUND if background is None else background
        roi.check_background(background, self.levels[-1])
        return roi.quantised(weights), background

    def _scaled(self, y: torch.Tensor, level: float, in_place: bool = False) -> torch.Tensor:
        """The latent ``y`` times the gain of ``level`` (in place: no second latent in memory)."""
        index = level_index(level)
        return y.mul_(self.model.gain.vector(index)) if in_place else self.model.gain(y, index)

    def encode_to_rate(self, rgb: np.ndarray, colour: int = COLOUR_RGB, max_bytes: int | None = None,
                       target_bpp: float | None = None, roi_weights: np.ndarray | None = None,
                       background: float | None = None, target_psnr: float | None = None,
                       ) -> tuple[bytes, int | float]:  # fmt: skip
        """(file, level) at the largest level whose file has at most ``max_bytes``, or whose rate is nearest
        ``target_bpp``; the level may be fractional (1/256 steps, recorded in the file). See
        ``helpers.codec.level_search``. With a region of interest (``encode``) the level of weight 1 is searched,
        the background's staying put (or at the level, where the level is lower); the whole file meets the
        target. ``target_psnr``: the lowest level whose decoding reaches that PSNR (dB; over the region of
        interest's full-weight blocks if there is one, else the whole image), or the top level if none does:
        each try is decoded, so it costs a decoding per step."""
        if sum(t is not None for t in (max_bytes, target_bpp, target_psnr)) != 1:
            raise CodecError("give one of a byte limit, a target rate or a target PSNR")
        if target_psnr is not None and not (np.isfinite(target_psnr) and target_psnr > 0):
            raise CodecError(f"the target PSNR must be a positive finite number of dB, not {target_psnr}")
        if max_bytes is not None and not max_bytes >= 1:
            raise CodecError(f"the byte limit must be at least 1, not {max_bytes}")
        if target_bpp is not None and not (np.isfinite(target_bpp) and target_bpp > 0):
            raise CodecError(f"the target rate must be a positive finite number, not {target_bpp}")
        rgb = self._checked_image(rgb, colour)
        region = self._region(rgb, roi_weights, background)
        h, w = rgb.shape[:2]
        self.check_size(w, h, decode=False, latents=2 + (target_psnr is not None))  # + the decoder's latent
        n, files = tiling.workers(), {}
        with _allocation("encode", h, w), single_thread(), torch.no_grad():
            y = tiling.analyse(self.g_a, rgb, self.model.M, n)

            def size_at(units: int) -> int:  # a level in the file's units (level x 256)
                if units not in files:
                    level = units / LEVEL_UNITS
                    files[units] = self._encode_latent(self._scaled(y, level), level, colour, h, w, n, region)
                return len(files[units])

            lo, hi = LEVEL_UNITS * self.levels[0], LEVEL_UNITS * self.levels[-1]
            if target_psnr is not None:
                units = self._lowest_reaching(rgb, files, size_at, lo, hi, target_psnr, region)
            elif target_bpp is not None:
                units = level_search.nearest(size_at, lo, hi, target_bpp * h * w / 8)
            else:
                try:
                    units, _ = level_search.largest_within(size_at, lo, hi, max_bytes)
                except CodecError as exc:
                    raise CodecError(
                        f"cannot meet --max-bytes {max_bytes} for a {w}x{h} image: {exc}"
                    ) from None
        level = units / LEVEL_UNITS
        return files[units], int(level) if level.is_integer() else level

    def _lowest_reaching(self, rgb, files, size_at, lo: int, hi: int, target_psnr: float, region) -> int:
        """The lowest level (file units) whose decoding reaches ``target_psnr`` (``encode_to_rate``): the level
        search of ``--max-bytes`` on the decoding's 1/MSE, which also grows with the level."""
        mask = None if region is None else roi.full_weight_pixels(region[0], *rgb.shape[:2])
        mask = mask if mask is not None and mask.any() else None
        limit = 10 ** (target_psnr / 10) / 255**2  # 1/MSE of the target

        def inverse_mse(units: int) -> float:
            size_at(units)
            error = self.decode(files[units]).astype(np.float64) - rgb
            mse = np.mean(np.square(error if mask is None else error[mask]))
            return np.inf if mse == 0 else 1 / mse

        try:
            _, above = level_search.largest_within(inverse_mse, lo, hi, limit * (1 - 1e-12))
        except CodecError:
            return lo  # the lowest level already reaches it
        return hi if above is None else above

    def _checked_image(self, rgb: np.ndarray, colour: int) -> np.ndarray:
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or 0 in rgb.shape:
            raise DataError(f"expected a uint8 RGB image (H, W, 3), not {rgb.dtype} {rgb.shape}")
        if colour not in COLOUR_NAMES:
            raise DataError(f"unknown colour mode {colour}")
        return rgb

    def _encode_latent(self, y: torch.Tensor, level: float, colour: int, h: int, w: int, n: int,
                       region: tuple[np.ndarray, float] | None = None) -> bytes:  # fmt: skip
        """The file of the latent ``y`` already scaled by the gain of ``level``; with a ``region`` (u8 weights,
        background level), each position is then rescaled to its own level (``helpers.codec.roi``)."""
        z_stream, z_hat = compress_hyper(self.model.entropy_bottleneck, self.model.h_a(y))
        roi_map, indexes = None, None
        background = None if region is None else min(region[1], level)
        if region is not None and background < level and region[0].min() < roi.WEIGHT_UNITS:
            roi_map, indexes = (
                roi.encode_map(region[0], background),
                roi.position_indexes(region[0], level, background),
            )

        streams, crc, tiles = [z_stream], 0, tiling.coding_tiles(h, w)
        # The hyper-synthesis of the next tiles runs on the workers while this thread codes rANS.
        for t, (params, ratios) in zip(tiles, self._parameters(z_hat, tiles, level, indexes, n)):
            y_tile = y[..., t.r0 : t.r1, t.c0 : t.c1]
            if ratios is not None:  # each position at its own level
                y_tile = y_tile.double() * ratios
            tile_streams, symbols = self.tile_codec.compress(y_tile, params)
            streams += tile_streams
            crc = zlib.crc32(symbols, crc)
        return pack(self.model_name, self.hash, level, colour, h, w, crc, streams, roi_map)

    def _tile_ratios(self, t: tiling.Tile, level: float, indexes: torch.Tensor | None) -> torch.Tensor | None:
        """A region-of-interest file's gain ratios over one coding tile (``roi.gain_ratios``); None if uniform."""
        if indexes is None:
            return None
        return roi.gain_ratios(self.model.gain, indexes[:, t.r0 : t.r1, t.c0 : t.c1], level)

    def _parameters(self, z_hat: torch.Tensor, tiles: list[tiling.Tile], level: float,
                    indexes: torch.Tensor | None, n: int):  # fmt: skip
        """Each coding tile's side parameters (``_tile_parameters``) and a region of interest's gain ratios over
        it (None if uniform), in order, computed on ``n`` workers. A one-tile image's are computed in two halves
        (``tiling.parameter_parts``) so that both workers share its float64 hyper-synthesis; the parts depend on
        the image's size only, never on the workers."""

        def part(p: tiling.Tile) -> tuple[torch.Tensor, torch.Tensor | None]:
            ratios = self._tile_ratios(p, level, indexes)
            return self._tile_parameters(z_hat, p, ratios), ratios

        parts = [tiling.parameter_parts(t, len(tiles)) for t in tiles]
        done = tiling.map_ordered(part, [p for tile_parts in parts for p in tile_parts], n)
        for tile_parts in parts:
            params, ratios = zip(*(next(done) for _ in tile_parts))
            yield torch.cat(params, 2), None if indexes is None else torch.cat(ratios, 2)

    def _tile_parameters(self, z_hat: torch.Tensor, t: tiling.Tile, ratios: torch.Tensor | None = None
                         ) -> torch.Tensor:  # fmt: skip
        """The side parameters of one coding tile: the float64 hyper-synthesis of its hyper-latent window,
        rescaled by a region of interest's gain ``ratios`` if given."""
        zw = tiling.z_window(t, *z_hat.shape[-2:])
        params = self.model.hyper_synthesis(
            z_hat[..., zw.a0 : zw.a1, zw.b0 : zw.b1], zw.crop(tiling.Z_STRIDE)
        )
        return params if ratios is None else self.tile_codec.rescaled(params, ratios)

    # ----- decoding -----------------------------------------------------------------------------------------
    def check_model(self, header: Header) -> None:
        if header.model_name != self.model_name or header.weights_hash != self.hash:
            raise CodecError(
                f"file was written by model {header.model_name!r} (weights {header.weights_hash.hex()}), "
                f"but the loaded checkpoint is {self.model_name!r} ({self.hash.hex()}); "
                "pass the matching --checkpoint"
            )

    def decode(self, data: bytes) -> np.ndarray:
        """The uint8 RGB image of a ``.leaf`` file's bytes."""
        return self.decode_parsed(parse(data))

    def decode_parsed(self, header: Header) -> np.ndarray:
        """The image of a file already parsed (``container.parse``: its streams are in the header)."""
        self.check_model(header)
        # The checksum held, yet the level is not the model's: a forged file or a faulty writer.
        if not self.levels[0] <= header.level <= self.levels[-1]:
            raise CodecError(f"corrupted header: level {header.level:g} is outside the model's levels "
                             f"{self.levels[0]}..{self.levels[-1]}")  # fmt: skip
        expected = 1 + self.tile_codec.streams_per_tile * tile_count(header.height, header.width)
        if len(header.streams) != expected:
            raise CodecError(
                f"corrupted header: {len(header.streams)} streams for a {header.width}x{header.height} image, "
                f"which has {expected}"
            )
        h, w = header.height, header.width
        self.check_size(w, h, decode=True)
        n = tiling.workers()
        indexes = self._position_indexes(header)
        with _allocation("decode", h, w), single_thread(), torch.no_grad():
            y_hat = self._decode_latent(header, n, indexes)
            if indexes is None:  # one inverse gain, applied tile by tile
                index = level_index(header.level)
                inverse = lambda y: self.model.inv_gain(y, index)  # noqa: E731
            else:  # each position's own inverse gain, applied to the whole latent in place
                roi.scale_in_place(y_hat, self.model.inv_gain, indexes)
                inverse = lambda y: y  # noqa: E731
            return tiling.synthesise(
                lambda y, region: self.g_s(inverse(y), region).clamp_(0, 1), y_hat, h, w, n
            )

    def _position_indexes(self, header: Header) -> torch.Tensor | None:
        """The gain index of every latent position of a region-of-interest file (None for a uniform one)."""
        if header.roi is None:
            return None
        if not self.tile_codec.supports_roi:
            raise CodecError(f"corrupted header: a region-of-interest file for model {self.model_name!r}, "
                             "whose context entropy model cannot code one")  # fmt: skip
        weights = header.roi.weights(*tiling.latent_size(header.height, header.width))
        return roi.position_indexes(weights, header.level, header.roi.background)

    def _decode_latent(self, header: Header, n: int, indexes: torch.Tensor | None = None) -> torch.Tensor:
        """Decode every stream (see the module docstring for the checks) -> the dequantised latent (at each
        position's own level, for a region-of-interest file: ``indexes``)."""
        rows, cols = tiling.latent_size(header.height, header.width)
        y_hat = torch.empty(1, self.model.M, rows, cols)  # first: if memory is short, fail before any work
        z_shape = (rows // tiling.Z_STRIDE, cols // tiling.Z_STRIDE)
        z_hat = decompress_hyper(self.model.entropy_bottleneck, header.streams[0], z_shape)
        k, crc = self.tile_codec.streams_per_tile, 0
        tiles = tiling.coding_tiles(header.height, header.width)
        # The float64 hyper-synthesis of the next tiles runs on the workers while this thread decodes rANS.
        params = self._parameters(z_hat, tiles, header.level, indexes, n)
        for i, (t, (tile_params, _)) in enumerate(zip(tiles, params)):
            streams = header.streams[1 + k * i : 1 + k * (i + 1)]
            name = f"latent stream {i + 1}" if k == 1 else f"latent streams {1 + k * i}-{k * (i + 1)}"
            tile, symbols = self.tile_codec.decompress(streams, tile_params, (t.r1 - t.r0, t.c1 - t.c0), name)
            crc = zlib.crc32(symbols, crc)
            y_hat[..., t.r0 : t.r1, t.c0 : t.c1] = tile
        if crc != header.symbols_crc:
            raise CodecError("decoding failed: latents differ from the encoder's (symbol checksum mismatch)")
        return y_hat
