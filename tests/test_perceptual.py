"""The perceptual tune's selection rule (helpers.experiments.perceptual): the smallest LPIPS weight that reaches the LPIPS
target with edge precision and high-frequency error within their slack of the MSE model's."""

import pandas as pd
import pytest

from helpers.experiments import perceptual


def _table(**rows):
    cols = ["bd_rate_lpips", "d_edge_precision", "d_hf_error"]
    return pd.DataFrame([{"codec": k, **dict(zip(cols, v))} for k, v in rows.items()])


def test_the_smallest_lpips_weight_that_reaches_the_target_with_edges_and_detail_kept_is_chosen():
    table = _table(
        a50=(-10.0, 0.01, 0.02),
        a50_b10=(-25.0, -0.02, 0.02),  # bought with false edges
        a50_b30=(-30.0, 0.0, 0.03),
        a50_b100=(-45.0, 0.0, 0.04),  # on target too, but a larger weight than needed
    )
    assert perceptual.choose(table) == "a50_b30"
    assert perceptual.choose(table.assign(d_hf_error=[0.02, 0.02, 0.2, 0.04])) == "a50_b100"
    # Nothing on target: the fair entry with the largest LPIPS gain.
    assert perceptual.choose(table.assign(bd_rate_lpips=[-10.0, -25.0, -15.0, -12.0])) == "a50_b30"


def test_no_fair_entry_is_an_error_not_a_silent_pick():
    with pytest.raises(ValueError, match="keeps the MSE model's edge precision"):
        perceptual.choose(_table(a50=(-40.0, -0.1, 0.0), a50_b10=(-30.0, 0.0, 0.2)))
