"""Tests for funknn_fast.models.liif: sizes, local ensemble, cell decoding, efficient evaluation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from funknn_fast.models.liif import (
    LIIF,
    LIIF_140K,
    LIIF_EDSR,
    LIIFConfig,
    cell_for_size,
    ensemble_corners,
    load_liif,
    save_liif,
)

TINY = LIIFConfig(encoder_features=4, encoder_blocks=1, hidden=8, hidden_layers=2)


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _tiny_model(seed: int = 0) -> LIIF:
    torch.manual_seed(seed)
    return LIIF(TINY).double()


def _inputs(batch=2, height=5, width=7, queries=40, seed=1, spread=1.2):
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, height, width, generator=generator, dtype=torch.float64)
    coords = (torch.rand(batch, queries, 2, generator=generator, dtype=torch.float64) * 2 - 1)
    return image, coords * spread


def _reference_liif(model: LIIF, coords, image, cell):
    """LIIF's query written the paper's way: nearest sampling of shifted coordinates."""
    feat = model.encoder(image * 2 - 1)
    batch, _, height, width = feat.shape
    unfolded = F.unfold(feat, 3, padding=1).view(batch, -1, height, width)
    ys = (2 * torch.arange(height, dtype=feat.dtype) + 1) / height - 1
    xs = (2 * torch.arange(width, dtype=feat.dtype) + 1) / width - 1
    centres = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=0)  # (2, h, w) = (x, y)
    centres = centres[None].expand(batch, -1, -1, -1)
    preds, areas = [], []
    for vy in (-1, 1):
        for vx in (-1, 1):
            shift = torch.tensor([vx / width + 1e-6, vy / height + 1e-6], dtype=feat.dtype)
            shifted = (coords + shift).clamp(-1 + 1e-6, 1 - 1e-6)[:, :, None, :]
            code = F.grid_sample(unfolded, shifted, mode="nearest", align_corners=False)
            centre = F.grid_sample(centres, shifted, mode="nearest", align_corners=False)
            code = code[..., 0].permute(0, 2, 1)
            rel = (coords - centre[..., 0].permute(0, 2, 1)) * torch.tensor(
                [width, height], dtype=feat.dtype
            )
            rel_cell = cell * torch.tensor([width, height], dtype=feat.dtype)
            x = torch.cat([code, rel, rel_cell.expand(batch, coords.shape[1], 2)], dim=-1)
            for layer in model.hidden_layers:
                x = F.relu(layer(x))
            preds.append(model.output_layer(x))
            areas.append((rel[..., 0] * rel[..., 1]).abs() + 1e-9)
    total = sum(areas)
    areas = areas[::-1]  # each prediction weighted by the area of its diagonal opposite
    blended = sum(p * (a / total)[..., None] for p, a in zip(preds, areas, strict=True))
    return (blended + 1) / 2


def test_parameter_counts_match_the_paper_sizes():
    edsr, small = _count(LIIF(LIIF_EDSR)), _count(LIIF(LIIF_140K))
    assert abs(edsr - 1.57e6) / 1.57e6 < 0.02
    assert abs(small - 140e3) / 140e3 < 0.05
    # EDSR-baseline encoder: head + 16 blocks of two 3x3 convs + body tail, 64 channels.
    conv = 64 * 64 * 9 + 64
    assert _count(LIIF(LIIF_EDSR).encoder) == 3 * 64 * 9 + 64 + 33 * conv
    widths = [a.in_features for a in LIIF(LIIF_EDSR).hidden_layers]
    assert widths == [580, 256, 256, 256]


@pytest.mark.parametrize("height,width", [(5, 7), (1, 1), (6, 3)])
def test_matches_the_paper_formulation(height, width):
    model = _tiny_model()
    image, coords = _inputs(height=height, width=width)
    cell = torch.tensor([0.11, 0.07], dtype=torch.float64)
    got = model(coords, image, cell)
    want = _reference_liif(model, coords, image, cell)
    assert got.shape == (2, 40, 3)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_ensemble_weights_sum_to_one_and_are_bilinear_inside():
    _, coords = _inputs(queries=500, spread=1.5)
    index, offset, weight = ensemble_corners(coords, 6, 9)
    torch.testing.assert_close(weight.sum(-1), torch.ones_like(weight[..., 0]))
    assert (weight >= 0).all() and index.min() >= 0 and index.max() < 54
    px = ((coords[..., 0] + 1) * 9 - 1) / 2
    py = ((coords[..., 1] + 1) * 6 - 1) / 2
    inside = (px > 0) & (px < 8) & (py > 0) & (py < 5)
    fx, fy = px - px.floor(), py - py.floor()
    bilinear = torch.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], -1)
    torch.testing.assert_close(weight[inside], bilinear[inside], rtol=1e-7, atol=1e-7)
    # Offsets are twice the distance in input pixels to the code centre.
    corner_x = (index % 9).to(px.dtype)
    torch.testing.assert_close(offset[..., 0], 2 * (px[..., None] - corner_x))


def test_cell_is_decoded_and_accepts_every_shape():
    model = _tiny_model()
    image, coords = _inputs()
    pair = model(coords, image, (0.2, 0.1))
    cell = torch.tensor([0.2, 0.1], dtype=torch.float64)
    tensor = model(coords, image, cell)
    per_batch = model(coords, image, torch.tensor([[0.2, 0.1]] * 2, dtype=torch.float64))
    per_query = model(coords, image, cell.expand(2, 40, 2))
    for other in (tensor, per_batch, per_query):
        torch.testing.assert_close(other, pair, rtol=0, atol=0)
    assert (model(coords, image, (0.05, 0.1)) - pair).abs().max() > 1e-6
    torch.testing.assert_close(cell_for_size(4, 8), torch.tensor([0.25, 0.5]))
    with pytest.raises(ValueError, match="cell is required"):
        model(coords, image)
    with pytest.raises(ValueError, match="cell must have shape"):
        model(coords, image, torch.zeros(3, 2, dtype=torch.float64))


def test_projected_and_chunked_evaluation_equal_naive_per_chunk_evaluation():
    model = _tiny_model()
    image, coords = _inputs(queries=103)
    cell = cell_for_size(13, 17, dtype=torch.float64)
    naive = torch.cat([model(coords[:, s : s + 10], image, cell) for s in range(0, 103, 10)], 1)
    for project in (False, True):
        features = model.encode(image, project=project)
        chunked = torch.cat(
            [model.query(features, coords[:, s : s + 10], cell) for s in range(0, 103, 10)], 1
        )
        torch.testing.assert_close(chunked, naive, rtol=1e-12, atol=1e-12)
        evaluated = model.evaluate(coords, image, cell, chunk_size=17, project=project)
        torch.testing.assert_close(evaluated, naive, rtol=1e-12, atol=1e-12)


def test_gradients_flow_to_every_parameter_image_and_coords():
    model = _tiny_model()
    image, coords = _inputs(queries=30, spread=0.9)
    image.requires_grad_(True)
    coords.requires_grad_(True)
    out = model(coords, image, (0.1, 0.1))
    out.square().sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert image.grad.abs().sum() > 0 and coords.grad.abs().sum() > 0


def test_gradcheck_in_image_and_coords():
    model = _tiny_model()
    image, coords = _inputs(batch=1, height=3, width=4, queries=6, spread=0.9)
    image.requires_grad_(True)
    coords.requires_grad_(True)
    for project in (False, True):
        assert torch.autograd.gradcheck(
            lambda c, i, p=project: model.query(model.encode(i, project=p), c, (0.3, 0.2)),
            (coords, image),
            fast_mode=True,
        )


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(3)
    model = LIIF(TINY)
    path = tmp_path / "liif.safetensors"
    save_liif(model, path)
    loaded = load_liif(path)
    assert loaded.config == TINY
    image, coords = (t.float() for t in _inputs())
    torch.testing.assert_close(loaded(coords, image, 0.1), model(coords, image, 0.1))
    assert not list(tmp_path.glob("*.tmp"))


def test_non_finite_coords_give_nan_not_an_error():
    model = _tiny_model()
    image, coords = _inputs(queries=4)
    coords[0, 1, 0] = float("nan")
    coords[1, 2, 1] = float("inf")
    out = model(coords, image, 0.1)
    assert out[0, 1].isnan().all() and out[1, 2].isnan().all()
    assert out[0, 0].isfinite().all() and out[1, 3].isfinite().all()


def test_bad_inputs_raise_clear_errors():
    model = _tiny_model()
    image, coords = _inputs()
    with pytest.raises(ValueError, match="image must have shape"):
        model(coords, image[0], 0.1)
    with pytest.raises(ValueError, match="channels"):
        model(coords, image[:, :2], 0.1)
    with pytest.raises(ValueError, match="coords must have shape"):
        model(coords[..., :1], image, 0.1)
    with pytest.raises(ValueError, match="batch size"):
        model(coords[:1], image, 0.1)
    with pytest.raises(TypeError, match="dtype"):
        model(coords.float(), image, 0.1)
    with pytest.raises(ValueError, match="encoder_blocks"):
        LIIFConfig(encoder_blocks=-1)
    with pytest.raises(ValueError, match="chunk_size"):
        model.evaluate(coords, image, 0.1, chunk_size=0)
