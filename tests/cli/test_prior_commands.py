"""``funknn sample`` and ``funknn solve`` on a tiny prior file."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from funknn_fast.cli import main
from funknn_fast.models.funknn import FunkNN
from funknn_fast.prior.autoencoder import AutoEncoder
from funknn_fast.prior.flow import LatentFlow
from funknn_fast.prior.generator import save_parts


@pytest.fixture(autouse=True)
def _single_thread():
    """One intra-op thread: the shared test machine is oversubscribed (8-20x slower with 2)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def prior_path(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("prior") / "tiny"
    parts = {"autoencoder": AutoEncoder(16, (4, 4), 4), "flow": LatentFlow(4, 1, (8,)),
             "funknn": FunkNN(channels=1, variant="mlp")}
    save_parts(path, parts, {"phantoms": {"size": 16, "edge_width": 0.15, "seed": 0,
                                          "train_count": 8}})
    return path


def test_sample_writes_a_png_grid_and_an_array(prior_path, tmp_path):
    out, npy = tmp_path / "s.png", tmp_path / "s.npy"
    code = main(["sample", "--weights", str(prior_path), "--n", "3", "--size", "20",
                 "--out", str(out), "--npy", str(npy)])
    assert code == 0
    assert Image.open(out).size == (2 * 20 + 2, 2 * 20 + 2)
    assert np.load(npy).shape == (3, 1, 20, 20)


def test_sample_reports_user_errors(tmp_path, capsys):
    assert main(["sample", "--weights", str(tmp_path / "none"), "--out", str(tmp_path / "a.png")]
                ) == 2
    assert "no prior" in capsys.readouterr().err
    assert main(["sample", "--n", "0"]) == 2


@pytest.mark.parametrize("problem", ["ct", "sparse-derivatives"])
def test_solve_writes_metrics_and_figure(problem, prior_path, tmp_path):
    code = main(["solve", problem, "--weights", str(prior_path), "--n-images", "2",
                 "--size", "12", "--z-steps", "2", "--finetune-steps", "1", "--angles", "6",
                 "--queries", "32", "--out-dir", str(tmp_path), "--quiet"])
    assert code == 0
    record = json.loads((tmp_path / f"{problem}.json").read_text())
    assert record["indices"] == [0, 1]
    assert len(record["per_image"]["prior"]["si_snr"]) == 2
    assert set(record["mean"]) == {"prior", "baseline", "autoencoder_projection",
                                   "funknn_of_baseline"}
    assert record["config"]["z_steps"] == 2
    assert Image.open(tmp_path / f"{problem}.png").format == "PNG"


def test_solve_derivatives_uses_the_problem_defaults(prior_path, tmp_path):
    from funknn_fast.prior.solvers import PROBLEM_DEFAULTS

    code = main(["solve", "derivatives", "--weights", str(prior_path), "--n-images", "1",
                 "--size", "12", "--z-steps", "2", "--init-finetune-steps", "3",
                 "--finetune-steps", "1", "--queries", "32", "--out-dir", str(tmp_path),
                 "--quiet"])
    assert code == 0
    config = json.loads((tmp_path / "derivatives.json").read_text())["config"]
    assert config["init_steps"] == PROBLEM_DEFAULTS["derivatives"]["init_steps"] > 0
    assert config["finetune_lr"] == PROBLEM_DEFAULTS["derivatives"]["finetune_lr"]
    assert (config["z_steps"], config["init_finetune_steps"], config["finetune_steps"]) == (2, 3, 1)


def test_solve_rejects_bad_options(prior_path, tmp_path):
    assert main(["solve", "ct", "--weights", str(prior_path), "--n-images", "0"]) == 2
    assert main(["solve", "ct", "--weights", str(prior_path), "--sparse-fraction", "2"]) == 2
    assert main(["solve", "ct", "--weights", str(prior_path), "--workers", "0"]) == 2


def test_solve_with_workers_matches_one_process(prior_path, tmp_path):
    options = ["solve", "sparse-derivatives", "--weights", str(prior_path), "--n-images", "3",
               "--first", "2", "--size", "12", "--init-steps", "2", "--z-steps", "2",
               "--finetune-steps", "2", "--queries", "32", "--quiet"]
    assert main([*options, "--out-dir", str(tmp_path / "one")]) == 0
    assert main([*options, "--out-dir", str(tmp_path / "two"), "--workers", "2",
                 "--threads", "1"]) == 0
    one = json.loads((tmp_path / "one" / "sparse-derivatives.json").read_text())
    two = json.loads((tmp_path / "two" / "sparse-derivatives.json").read_text())
    assert one["indices"] == two["indices"] == [2, 3, 4]
    assert two["workers"] == 2
    np.testing.assert_allclose(two["per_image"]["prior"]["si_snr"],
                               one["per_image"]["prior"]["si_snr"], rtol=1e-5)
    np.testing.assert_allclose(two["final_loss"], one["final_loss"], rtol=1e-5)
