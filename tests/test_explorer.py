"""Tests for camtrap_ssl.analysis.explorer: static (browser-only) and live explorers."""
import pytest
import torch
from toy_networks import SmallConvNet as Net

from camtrap_ssl.analysis.explorer import filter_explorer, saliency_explorer


@pytest.fixture
def setup():
    torch.manual_seed(0)
    models = {"SSL": Net(1).eval(), "SL": Net(2).eval()}
    return models, torch.rand(3, 3, 16, 16), ["zebra", "gnu", "empty"]


def _leaves(stack):
    return [leaf for inner in stack.children for leaf in inner.children]


def _links(explorer):
    """(source id, source trait, target id, target trait) of every LinkModel in the state."""
    out = []
    for state in explorer.state().values():
        if state["model_name"] == "LinkModel":
            (s, st), (t, tt) = state["state"]["source"], state["state"]["target"]
            out.append((s.replace("IPY_MODEL_", ""), st, t.replace("IPY_MODEL_", ""), tt))
    return out


def test_static_saliency_explorer_links_and_panels(setup):
    models, x, labels = setup
    ex = saliency_explorer(models, x, labels, methods=("saliency", "gradcam"), static=True,
                           layer="layer3")
    leaves = _leaves(ex.view)
    assert ex.n_panels == len(leaves) == 6
    values = [leaf.value for leaf in leaves]
    assert all(v[:4] == b"\x89PNG" for v in values)
    assert len(set(values)) == 6  # every panel is a different picture
    links = _links(ex)
    image_dd, method_dd = ex.controls["image"], ex.controls["method"]
    assert (image_dd.model_id, "index", ex.view.model_id, "selected_index") in links
    for inner in ex.view.children:
        assert (method_dd.model_id, "index", inner.model_id, "selected_index") in links
    assert [o[0] for o in image_dd.options] == labels
    state_ids = set(ex.state())
    assert {leaf.model_id for leaf in leaves} <= state_ids  # the pictures travel in the state


def test_static_cap_is_checked_before_work(setup, monkeypatch):
    import camtrap_ssl.analysis.explorer as explorer

    models, x, labels = setup
    monkeypatch.setattr(explorer, "attribute", lambda *a, **k: pytest.fail("computed"))
    with pytest.raises(ValueError, match="max_panels=4"):
        saliency_explorer(models, x, labels, methods=("saliency", "gradcam"), static=True,
                          max_panels=4)
    with pytest.raises(ValueError, match="allowed"):
        saliency_explorer(models, x, labels, methods=("lrp",))


def test_live_saliency_explorer_updates(setup):
    models, x, labels = setup
    ex = saliency_explorer(models, x, labels, methods=("saliency", "gradcam"), static=False)
    first = ex.view.value
    assert first[:4] == b"\x89PNG"
    ex.controls["image"].value = 2
    second = ex.view.value
    assert second != first
    ex.controls["method"].value = 1
    assert ex.view.value not in (first, second)
    ex.controls["image"].value = 0
    ex.controls["method"].value = 0
    assert ex.view.value == first  # memoized and deterministic


def test_filter_explorers(setup, tmp_path):
    models, x, labels = setup
    ex = filter_explorer(models, x, labels, layers=("layer1", "layer4"), static=True)
    assert ex.n_panels == len(_leaves(ex.view)) == 6
    assert len({leaf.value for leaf in _leaves(ex.view)}) == 6
    ex.save_html(tmp_path / "filters.html")
    html = (tmp_path / "filters.html").read_text()
    assert "LinkModel" in html and "StackModel" in html
    live = filter_explorer(models, x, labels, static=False)
    first = live.view.value
    live.controls["filter"].value = 3
    assert live.view.value != first
    live.controls["block"].value = 1
    live.controls["filter"].value = 7  # layer2 has only 6 filters: an empty slot, no error
    assert live.view.value[:4] == b"\x89PNG"
