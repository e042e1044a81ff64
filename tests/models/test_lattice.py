"""FunkNN's lattice variant: unit spacing, 'valid' trunk blind to the centring, MAC counts."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from funknn_fast.models.checkpoint import load_model, save_model
from funknn_fast.models.funknn import INPUT_SCALE, FunkNN, count_parameters
from funknn_fast.models.lattice import per_query_macs, trunk_macs_per_point

pytestmark = pytest.mark.usefixtures("one_thread")


def perturbed(model):
    with torch.no_grad():
        for param in model.lattice.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return model


def test_trunk_is_blind_to_the_per_query_centring():
    """conv0's kernels sum to zero over their window, so the trunk of the centred patch equals
    the trunk of the raw lattice: what lets grid_render share it between queries."""
    torch.manual_seed(0)
    model = perturbed(FunkNN(3, "lattice").double())
    patches = torch.rand(5, 3, 9, 9, dtype=torch.float64)
    centre = patches[:, :, 4:5, 4:5]
    net = model.lattice
    centred = net.trunk(INPUT_SCALE * (patches - centre))
    raw = net.trunk(INPUT_SCALE * patches)
    assert centred.abs().max() > 0.1
    assert torch.allclose(centred, raw, rtol=0, atol=1e-12)
    assert net.conv0_weight().sum(dim=(2, 3)).abs().max() < 1e-12


def test_forward_is_patch_network_plus_centre_with_unit_step():
    torch.manual_seed(1)
    model = perturbed(FunkNN(3, "lattice").double())
    assert not model.step.requires_grad and torch.equal(model.step, torch.ones(2).double())
    image = torch.rand(1, 3, 6, 7, dtype=torch.float64)
    coords = torch.rand(1, 11, 2, dtype=torch.float64) * 2 - 1
    patches = model.sample_patches(coords, image)[0]
    expected = model.lattice(patches) + patches[:, :, 4, 4]
    assert torch.allclose(model(coords, image)[0], expected, atol=1e-12)


def test_training_step_leaves_the_spacing_fixed():
    model = FunkNN(3, "lattice")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    image = torch.rand(1, 3, 8, 8)
    coords = torch.rand(1, 16, 2) * 2 - 1
    model(coords, image).square().mean().backward()
    optimizer.step()
    assert torch.equal(model.step.detach(), torch.ones(2))
    assert count_parameters(model) == 121_091


def test_mac_counts_match_the_flop_counter():
    model = FunkNN(3, "lattice")
    with FlopCounterMode(display=False) as counter:
        model.lattice(torch.rand(1, 3, 9, 9))
    assert counter.get_total_flops() == 2 * per_query_macs(3, 9) == 2 * 1_383_296
    with FlopCounterMode(display=False) as counter:
        model.lattice.trunk(torch.rand(1, 3, 19, 19))  # layers output 17, 15, 13, 11 squared
    per_layer = [9 * 3 * 64] + [9 * 64 * 64] * 3  # multiply-adds per output point and layer
    sides = (17, 15, 13, 11)
    assert counter.get_total_flops() == 2 * sum(m * s * s for m, s in zip(per_layer, sides))
    assert trunk_macs_per_point(3, 9) == sum(per_layer) == 112_320


def test_weights_round_trip(tmp_path):
    model = perturbed(FunkNN(3, "lattice"))
    save_model(model, tmp_path / "lattice", {"step": 1})
    loaded = load_model(tmp_path / "lattice")
    assert loaded.variant == "lattice" and not loaded.step.requires_grad
    image, coords = torch.rand(1, 3, 5, 5), torch.rand(1, 7, 2) * 2 - 1
    assert torch.equal(loaded(coords, image), model.eval()(coords, image))


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="activation"):
        FunkNN(3, "lattice", activation="sin")
    with pytest.raises(ValueError, match="patch_size"):
        FunkNN(3, "lattice", patch_size=1)


def test_exact_derivatives_refuse_the_variant_by_name():
    from funknn_fast.derivatives import funknn_derivatives

    with pytest.raises(ValueError, match="lattice"):
        funknn_derivatives(FunkNN(3, "lattice"), torch.zeros(1, 2, 2), torch.rand(1, 3, 8, 8))
