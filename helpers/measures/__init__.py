"""Measures that training and the study both use: image-quality and rate metrics (PSNR, MS-SSIM, LPIPS, BD-rates,
edge and high-frequency fidelity) and the LPIPS network's third-party assets, fetched offline."""
