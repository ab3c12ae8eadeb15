"""The training objective and its rate. Loss per image at quality level k (CompressAI convention, lambda on the
distortion):

    L_k = R + lambda_k * [ (1 - alpha) * 255^2 * MSE + alpha * MSSSIM_WEIGHT * (1 - MS-SSIM)
                           + beta * LPIPS_WEIGHT * LPIPS ]

The paper writes the same trade-off as lambda_R * R + D, with every distortion term (LPIPS included) in D; the two
are equal up to scale with lambda = 1/lambda_R. LPIPS therefore sits inside the bracket, so the balance between
pixel fidelity and perceptual distance is the same at every quality level.
Each image in a batch draws its own level, so one run trains every quality level of the gain-unit model.
"""

from __future__ import annotations

import torch
from torch import nn

from helpers.training.config import TrainConfig

MSSSIM_WEIGHT = 2000.0  # brings (1 - MS-SSIM) to the scale of 255^2 * MSE at typical operating points
LPIPS_WEIGHT = 1000.0  # likewise for LPIPS-alex (about 0.15 where 255^2 * MSE is about 130, i.e. 27 dB)


def estimated_bpp(likelihoods: dict, pixels: int) -> torch.Tensor:
    """Per-image ideal code length of every latent (sum of -log2 likelihoods) per pixel: the training rate."""
    return sum(-torch.log2(v).flatten(1).sum(1) for v in likelihoods.values()) / pixels


def psnr_db(mse: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


class RateDistortionLoss(nn.Module):
    def __init__(self, cfg: TrainConfig):
        super().__init__()
        self.alpha, self.beta = cfg.alpha, cfg.beta
        self.lpips = None
        if self.beta > 0:
            from helpers.measures.metrics import lpips_network

            self.lpips = lpips_network()

    def forward(self, out: dict, x: torch.Tensor, lam: torch.Tensor) -> dict:
        n, _, h, w = x.shape
        bpp = estimated_bpp(out["likelihoods"], h * w)
        x_hat = out["x_hat"]
        mse = ((x_hat - x) ** 2).flatten(1).mean(1)
        dist_ = (1 - self.alpha) * 255**2 * mse
        if self.alpha > 0:
            from pytorch_msssim import ms_ssim

            # Five scales need >160 px; smaller crops drop the coarsest scale(s).
            scales = 5 if min(h, w) > 160 else 4
            weights = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333][:scales]
            msssim = ms_ssim(x_hat.clamp(0, 1), x, data_range=1.0, size_average=False, weights=weights)
            dist_ = dist_ + self.alpha * MSSSIM_WEIGHT * (1 - msssim)
        if self.lpips is not None:
            lp = self.lpips(x_hat.float() * 2 - 1, x * 2 - 1).flatten()
            dist_ = dist_ + self.beta * LPIPS_WEIGHT * lp
        loss = bpp + lam * dist_
        return {"loss": loss.mean(), "bpp": bpp.detach(), "mse": mse.detach()}
