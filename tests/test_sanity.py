"""The model-parameter randomisation test on networks whose answer is known."""
import numpy as np
import pytest
import torch
from toy_networks import residual_tiny

from camtrap_ssl.analysis.sanity import cascading_randomisation, randomise


def images(n=4, seed=1):
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


class Untouched(torch.nn.Module):
    """A residual net with an extra ``fc`` the logits never read: randomising it changes
    nothing, so every method must keep rank correlation 1."""

    def __init__(self):
        super().__init__()
        self.body = residual_tiny()
        self.layer4 = self.body.layer4
        self.fc = torch.nn.Linear(3, 3)

    def forward(self, x):
        return self.body(x)


def test_randomising_an_unused_layer_leaves_every_map_unchanged():
    df = cascading_randomisation(Untouched(), images(), 1, ["saliency", "gradcam"],
                                 cascade=["fc"])
    assert np.allclose(df["spearman_mean"], 1.0)


def test_randomising_the_whole_network_changes_gradient_maps():
    df = cascading_randomisation(residual_tiny(), images(), 1, ["saliency", "gradcam"])
    assert list(df["randomised"].unique()) == ["fc", "layer4", "layer3", "layer2", "layer1"]
    last = df[df["stage"] == 5].set_index("method")
    assert (last["spearman_mean"] < 0.6).all()
    first = df[df["stage"] == 1]
    assert (first["n"] + first["n_blank"] == 4).all()


def test_randomise_is_seeded_and_keeps_the_original():
    m = residual_tiny()
    w = m.fc.weight.clone()
    a, b = randomise(m, ["fc"], seed=3), randomise(m, ["fc"], seed=3)
    assert torch.equal(a.fc.weight, b.fc.weight) and not torch.equal(a.fc.weight, w)
    assert torch.equal(m.fc.weight, w)
    with pytest.raises(ValueError, match="methods"):
        cascading_randomisation(m, images(), 1, ["magic"])


DETERMINISM = """
import sys, torch
sys.path.insert(0, {tests!r})
from toy_networks import residual_tiny
from camtrap_ssl.analysis.filters import FilterResult, filter_agreement
from camtrap_ssl.analysis.sanity import cascading_randomisation
x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
r = cascading_randomisation(residual_tiny(), x, 1, ["saliency"], seed=7)
means = torch.rand(20, 6, generator=torch.Generator().manual_seed(2))
f = filter_agreement(FilterResult(("layer1",), {{"layer1": means.argmax(1)}}, {{}}, {{}},
                                  {{"layer1": 6}}, {{"layer1": means}}), n_perm=50, seed=7)
print(r["spearman_mean"].round(12).tolist(), f["perm_top_share"].round(12).tolist())
"""


@pytest.mark.slow
def test_randomised_draws_repeat_in_fresh_processes():
    import os
    import subprocess
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    code = DETERMINISM.format(tests=here)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    outs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=120, env=env, check=True).stdout for _ in range(2)]
    assert outs[0] == outs[1] and outs[0].strip()
