"""The coding path's fast rewrites compute what the model's own modules compute: the channels-last transforms with
fused GDN and sub-pixel convolutions, transforms and the hyper-synthesis computed on a region only, scale indexes
by binary search, and the rANS coder called on arrays (the same streams as CompressAI's own calls)."""

import random

import numpy as np
import pytest
import torch
from compressai.entropy_models import GaussianConditional
from compressai.layers import GDN
from compressai.models.utils import deconv
from torch import nn

from helpers.codec.checkpoints import load_model
from helpers.codec.fast_transforms import FusedGDN, SubPixelConv, coding_copy
from helpers.codec.gain_hyperprior import GainHyperprior
from helpers.codec.latent_coding import RansTables, scale_indexes
from helpers.codec.regions import region_only

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shipped():
    return load_model(None)[0]


def test_a_sub_pixel_convolution_is_the_transposed_one():
    torch.manual_seed(0)
    for cout in (3, 8):
        layer = deconv(16, cout)
        x = torch.randn(2, 16, 9, 7)
        assert torch.allclose(SubPixelConv(layer)(x), layer(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("inverse", [False, True])
def test_fused_gdn_is_gdn(inverse):
    torch.manual_seed(0)
    gdn = GDN(8, inverse=inverse)
    with torch.no_grad():
        gdn.gamma.add_(torch.rand_like(gdn.gamma) * 0.1)
    x = torch.randn(1, 8, 5, 6)
    assert torch.allclose(FusedGDN(gdn)(x), gdn(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("transform", ["gdn", "dwsep"])
def test_coding_copies_compute_the_model_transforms(shipped, transform):
    """Every architecture's transforms (today's model; a depthwise-separable candidate with nested layers),
    whole and on a region, within float32 rounding of the model's own modules."""
    model = (
        shipped if transform == "gdn" else GainHyperprior("dwsep", 16, 24, "hyperprior", [0.01, 0.1]).eval()
    )
    torch.manual_seed(0)
    x, y = torch.rand(1, 3, 128, 96), torch.randn(1, model.M, 8, 6) * 3
    with torch.no_grad():
        g_a, g_s = coding_copy(model.g_a), coding_copy(model.g_s)
        assert torch.allclose(g_a(x), model.g_a(x), rtol=1e-4, atol=1e-4)
        assert torch.allclose(g_s(y), model.g_s(y), rtol=1e-4, atol=1e-4)
        region = (slice(16, 80), slice(32, 96))
        assert torch.allclose(g_s(y, region), model.g_s(y)[(..., *region)], rtol=1e-4, atol=1e-4)
        assert torch.allclose(
            g_a(x, (slice(2, 6), slice(1, 5))), model.g_a(x)[..., 2:6, 1:5], rtol=1e-4, atol=1e-4
        )
    assert next(model.g_s.parameters()).is_contiguous()  # the model's own modules are left as they were


def test_a_region_sums_exactly_what_the_whole_run_sums():
    """float64: any output region of a net of strided, transposed and pointwise layers is the whole run's, to the
    last few bits (only the order of the sums may differ), including regions at the edges of the output."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 5, 2, 2), nn.LeakyReLU(), nn.Conv2d(8, 4, 3, 1, 1),
                        nn.Sequential(nn.ConvTranspose2d(4, 5, 5, 2, 2, 1))).double()  # fmt: skip
    x = torch.randn(1, 3, 41, 37, dtype=torch.float64)
    whole = net(x)
    rng = random.Random(0)
    for _ in range(100):
        r0, c0 = rng.randrange(whole.shape[2]), rng.randrange(whole.shape[3])
        r1, c1 = rng.randrange(r0 + 1, whole.shape[2] + 1), rng.randrange(c0 + 1, whole.shape[3] + 1)
        part = region_only(net, x, (slice(r0, r1), slice(c0, c1)))
        assert part.shape[-2:] == (r1 - r0, c1 - c0)
        assert (part - whole[..., r0:r1, c0:c1]).abs().max() < 1e-12


def test_a_region_of_the_hyper_synthesis_is_the_window_s(shipped):
    z = torch.randint(-6, 7, (1, shipped.N, 20, 20), generator=torch.Generator().manual_seed(0)).float()
    region = (slice(8, 72), slice(8, 72))
    whole = shipped.hyper_synthesis(z)[(..., *region)]
    assert (shipped.hyper_synthesis(z, region) - whole).abs().max() < 1e-9


def test_scale_indexes_are_compressai_s(shipped):
    gc = shipped.tile_codec.gc
    table = gc.scale_table.float()
    scales = torch.cat([torch.rand(20000) * 300, table, table * (1 + 1e-7), table * (1 - 1e-7),
                        torch.tensor([0.0, -1.0, 1e-9, float("inf"), float("nan")])]).reshape(1, -1, 1, 1)  # fmt: skip
    assert torch.equal(scale_indexes(gc, scales), gc.build_indexes(scales))


def test_rans_on_arrays_writes_compressai_s_streams(shipped):
    gc: GaussianConditional = shipped.tile_codec.gc
    g = torch.Generator().manual_seed(0)
    indexes = torch.randint(0, len(gc.scale_table), (1, 8, 12, 12), generator=g, dtype=torch.int32)
    symbols = torch.randint(-30, 31, indexes.shape, generator=g, dtype=torch.int32)
    rans = RansTables(gc)
    stream = rans.encode(symbols, indexes)
    assert stream == gc.compress(symbols.float(), indexes)[0]
    assert torch.equal(rans.decode(stream + bytes(4096), indexes), symbols)


def test_the_stage_timer_records_only_while_asked(shipped, tmp_path):
    """``benchmark --stages``: a recording collects the decorated stages of a real decode; outside one, nothing
    is collected (and nothing is slowed but by a flag test)."""
    from helpers.codec import stage_timer
    from helpers.codec.leaf_codec import LeafCodec

    codec = LeafCodec()
    data = codec.encode(np.full((64, 80, 3), 120, np.uint8), 3)
    with stage_timer.recording() as seconds:
        codec.decode(data)
    assert {"hyper-synthesis (float64)", "rANS", "synthesis (g_s)", "total"} <= set(seconds)
    assert all(v >= 0 for v in seconds.values()) and seconds["total"] >= seconds["synthesis (g_s)"]
    codec.decode(data)
    assert stage_timer._totals is None


_LEAN = """
import sys
import numpy as np
from helpers.codec.leaf_codec import LeafCodec
codec = LeafCodec()
assert codec.decode(codec.encode(np.full((40, 56, 3), 90, np.uint8))).shape == (40, 56, 3)
print(*sorted(m for m in ("torch_geometric", "torchvision", "scipy.stats._stats_py") if m in sys.modules))
import compressai
import scipy.stats
print(compressai.__version__, compressai.datasets.__name__, scipy.stats.norm.ppf(0.5))
"""


def test_coding_imports_compressai_without_its_datasets():
    """A command's start: coding loads neither torch_geometric nor torchvision (CompressAI's package would import
    both, ~3 s) nor scipy.stats (0.8 s), and each still imports on first use."""
    import subprocess
    import sys

    from codec_samples import ROOT

    proc = subprocess.run(
        [sys.executable, "-c", _LEAN], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    loaded, version = proc.stdout.splitlines()
    assert loaded == "" and version.endswith(" compressai.datasets 0.0")


def test_a_process_that_imported_compressai_keeps_it():
    import sys

    import compressai

    from helpers.codec.lean_imports import lean_compressai

    before = sys.modules["compressai"]
    assert lean_compressai() is False and sys.modules["compressai"] is before is compressai


def test_progress_hears_of_every_transform_tile(shipped):
    """The command line's bar for long single images: each analysis and synthesis tile is reported, in order."""
    from helpers.codec import tiling
    from helpers.codec.leaf_codec import LeafCodec

    codec, ticks = LeafCodec(), []
    rgb = np.random.default_rng(0).integers(0, 255, (600, 1100, 3), dtype=np.uint8)  # 3 x 2 transform tiles
    with tiling.progress(lambda what, done, total: ticks.append((what, done, total))):
        codec.decode(codec.encode(rgb, 1))
    assert ticks == [("analysis", k, 6) for k in range(1, 7)] + [("synthesis", k, 6) for k in range(1, 7)]
    codec.encode(rgb[:64, :64], 1)
    assert len(ticks) == 12  # nothing heard outside the block


def test_the_installed_command_names_itself(monkeypatch, capsys):
    from helpers.codec import cli

    monkeypatch.setattr("sys.argv", ["/somewhere/bin/leaf-codec", "--help"])
    with pytest.raises(SystemExit):
        cli.main()
    assert capsys.readouterr().out.startswith("usage: leaf-codec ")


def test_the_tile_bar_makes_one_bar_per_stage(monkeypatch):
    """On a terminal, each stage of a large image gets one bar, advanced tile by tile (not a bar per tile)."""
    import io

    import tqdm.auto

    from helpers.codec import cli, tiling

    made = []

    class Bar(tqdm.auto.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, file=io.StringIO(), **kwargs)
            made.append(self)

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    monkeypatch.setattr("sys.stderr", Terminal())
    with cli._tile_bar():
        report = tiling._progress.get()
        for what in ("analysis", "synthesis"):
            for done in range(1, 13):
                report(what, done, 12)
        report("analysis", 1, 2)  # a small image: no bar
    assert [(bar.desc, bar.n, bar.total) for bar in made] == [("analysis", 12, 12), ("synthesis", 12, 12)]
