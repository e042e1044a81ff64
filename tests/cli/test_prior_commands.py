"""``funknn sample`` and ``funknn solve`` on a tiny prior file."""

import json

import numpy as np
import pytest
import torch
from _entry_point import funknn, one_line_error
from PIL import Image

from funknn_fast.cli import main
from funknn_fast.models.funknn import FunkNN
from funknn_fast.prior.autoencoder import AutoEncoder
from funknn_fast.prior.flow import LatentFlow
from funknn_fast.prior.generator import save_parts

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


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


def _direct(prior_path, problem, method, indices, split="test", **overrides):
    """What ``funknn solve`` should compute, by the library: per-image metrics of ``method``."""
    from funknn_fast.prior import solvers
    from funknn_fast.prior.generator import load_prior
    from funknn_fast.prior.phantoms import phantom_parameters

    prior = load_prior(prior_path)
    config = solvers.default_config(problem, method, **overrides)
    params = phantom_parameters(indices, split, 0)
    observed = solvers.make_problem(problem, params, config, 0.15)
    results = [solvers.run_method(method, observed.select(k), prior, config)
               for k in range(len(indices))]
    estimate = torch.cat([result["estimate"] for result in results])
    return (solvers.metrics(estimate, observed.truth),
            solvers.metrics(solvers.baseline(observed), observed.truth), results)


@pytest.mark.parametrize("problem", ["ct", "sparse-derivatives"])
def test_solve_writes_what_the_library_computes(problem, prior_path, tmp_path):
    code = main(["solve", problem, "--weights", str(prior_path), "--n-images", "2",
                 "--size", "12", "--z-steps", "2", "--finetune-steps", "1", "--angles", "6",
                 "--queries", "32", "--out-dir", str(tmp_path), "--quiet"])
    assert code == 0
    record = json.loads((tmp_path / f"{problem}.json").read_text())
    assert record["indices"] == [0, 1] and record["method"] == "prior"
    estimate, baseline, _ = _direct(prior_path, problem, "prior", [0, 1], size=12, z_steps=2,
                                    finetune_steps=1, angles=6, queries=32)
    for key in ("snr", "si_snr"):
        np.testing.assert_allclose(record["per_image"]["estimate"][key], estimate[key],
                                   rtol=1e-6)
        np.testing.assert_allclose(record["per_image"]["baseline"][key], baseline[key],
                                   rtol=1e-9)
    assert Image.open(tmp_path / f"{problem}.png").format == "PNG"


def test_solve_derivatives_runs_the_problem_defaults(prior_path, tmp_path):
    """The final loss of the command equals the library's with PROBLEM_DEFAULTS (warm start of
    z and of the decoder copy included): a default lost on the way changes it."""
    code = main(["solve", "derivatives", "--weights", str(prior_path), "--n-images", "1",
                 "--size", "12", "--z-steps", "2", "--init-finetune-steps", "3",
                 "--finetune-steps", "1", "--queries", "32", "--out-dir", str(tmp_path),
                 "--quiet"])
    assert code == 0
    record = json.loads((tmp_path / "derivatives.json").read_text())
    _, _, results = _direct(prior_path, "derivatives", "prior", [0], size=12, z_steps=2,
                            init_finetune_steps=3, finetune_steps=1, queries=32)
    losses = results[0]["losses"]
    assert len(losses["init"]) > 0
    assert record["final_loss"][0] == pytest.approx(losses["finetune"][-1], rel=1e-6)


@pytest.mark.parametrize(("problem", "method"), [("ct", "tv"), ("ct", "fbp"),
                                                 ("derivatives", "tv-poisson"),
                                                 ("sparse-derivatives", "funknn-of-baseline")])
def test_solve_methods_on_the_validation_split(problem, method, prior_path, tmp_path):
    code = main(["solve", problem, "--method", method, "--split", "validation", "--seed", "1",
                 "--weights", str(prior_path), "--n-images", "2", "--size", "12",
                 "--angles", "6", "--baseline-tv-weight", "1e-3", "--baseline-steps", "200",
                 "--out-dir", str(tmp_path), "--quiet"])
    assert code == 0
    record = json.loads((tmp_path / f"{problem}-{method}-seed1.json").read_text())
    assert (record["method"], record["split"], record["seed"]) == (method, "validation", 1)
    estimate, baseline, _ = _direct(prior_path, problem, method, [0, 1], "validation", size=12,
                                    angles=6, baseline_tv_weight=1e-3, baseline_steps=200,
                                    seed=1)
    for key in ("snr", "si_snr"):
        np.testing.assert_allclose(record["per_image"]["estimate"][key], estimate[key],
                                   rtol=1e-6)
        np.testing.assert_allclose(record["per_image"]["baseline"][key], baseline[key],
                                   rtol=1e-9)
    if method == "fbp":
        assert record["per_image"]["estimate"] == record["per_image"]["baseline"]
    test_scores = _direct(prior_path, problem, method, [0, 1], "test", size=12, angles=6,
                          baseline_tv_weight=1e-3, baseline_steps=200, seed=1)[1]
    assert test_scores["snr"] != baseline["snr"]  # the splits hold different phantoms


def test_solve_rejects_bad_options(prior_path, tmp_path, capsys):
    assert main(["solve", "ct", "--weights", str(prior_path), "--n-images", "0"]) == 2
    assert main(["solve", "ct", "--weights", str(prior_path), "--sparse-fraction", "2"]) == 2
    assert main(["solve", "ct", "--weights", str(prior_path), "--workers", "0"]) == 2
    capsys.readouterr()
    assert main(["solve", "derivatives", "--weights", str(prior_path), "--method", "tv"]) == 2
    assert "--method" in capsys.readouterr().err


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
    np.testing.assert_allclose(two["per_image"]["estimate"]["si_snr"],
                               one["per_image"]["estimate"]["si_snr"], rtol=1e-5)
    np.testing.assert_allclose(two["final_loss"], one["final_loss"], rtol=1e-5)


def test_solve_device_cpu_is_the_default_run_here(prior_path, tmp_path):
    """``--device cpu`` equals the default (auto: the CPU without CUDA), number for number; the
    record names the device."""
    options = ["solve", "sparse-derivatives", "--weights", str(prior_path), "--n-images", "1",
               "--size", "12", "--init-steps", "2", "--z-steps", "2", "--finetune-steps", "1",
               "--queries", "32", "--quiet"]
    assert main([*options, "--out-dir", str(tmp_path / "cpu"), "--device", "cpu"]) == 0
    assert main([*options, "--out-dir", str(tmp_path / "auto")]) == 0
    cpu, auto = (json.loads((tmp_path / name / "sparse-derivatives.json").read_text())
                 for name in ("cpu", "auto"))
    assert cpu["device"] == "cpu"
    assert auto["device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        for key in ("per_image", "mean", "final_loss", "config"):
            assert cpu[key] == auto[key], key


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_solve_device_cuda_without_cuda_is_a_one_line_error(prior_path, tmp_path):
    out = tmp_path / "never"
    result = funknn("solve", "ct", "--weights", str(prior_path), "--n-images", "1",
                    "--size", "12", "--out-dir", str(out), "--device", "cuda")
    assert one_line_error(result, "--device cuda", "no CUDA device"), result.stderr
    assert not out.exists()  # refused before any work


def test_solve_puts_the_prior_and_the_phantoms_on_the_device(prior_path, tmp_path,
                                                             monkeypatch):
    """Without a GPU, ``--device`` resolved to the meta device shows where the command puts the
    prior and the observations (stopped at the baseline, the first step that needs data)."""
    from funknn_fast.cli import common
    from funknn_fast.prior import generator, solvers

    seen, load_prior = {}, generator.load_prior

    class Stop(Exception):
        pass

    def load(path):
        seen["prior"] = load_prior(path)
        return seen["prior"]

    def baseline(problem):
        seen["problem"] = problem.device
        raise Stop

    monkeypatch.setattr(common, "device_of", lambda args: torch.device("meta"))
    monkeypatch.setattr(generator, "load_prior", load)
    monkeypatch.setattr(solvers, "baseline", baseline)
    with pytest.raises(Stop):
        main(["solve", "ct", "--weights", str(prior_path), "--n-images", "1", "--size", "12",
              "--angles", "6", "--out-dir", str(tmp_path), "--quiet"])
    assert seen["prior"].device == seen["problem"] == torch.device("meta")


def test_solve_scattered_derivatives_writes_what_the_library_computes(prior_path, tmp_path):
    """``--sampling scattered --samples M --sample-seed S``: the library's scattered problem
    (the same points, baseline and solve), written as ``<problem>-scattered<M>``;
    ``--eval-size`` scores the solution rendered on that grid against the phantom there."""
    code = main(["solve", "sparse-derivatives", "--weights", str(prior_path), "--n-images", "2",
                 "--size", "12", "--sampling", "scattered", "--samples", "200",
                 "--sample-seed", "5", "--z-steps", "2", "--finetune-steps", "1",
                 "--queries", "16", "--eval-size", "20", "--out-dir", str(tmp_path), "--quiet"])
    assert code == 0
    record = json.loads((tmp_path / "sparse-derivatives-scattered200.json").read_text())
    assert (record["sampling"], record["samples"], record["sample_seed"]) == ("scattered", 200,
                                                                            5)
    assert (record["size"], record["eval_size"]) == (12, 20)
    overrides = {"size": 12, "sampling": "scattered", "samples": 200, "sample_seed": 5,
                 "z_steps": 2, "finetune_steps": 1, "queries": 16}
    estimate, baseline, results = _direct(prior_path, "sparse-derivatives", "prior", [0, 1],
                                          **overrides)
    for key in ("snr", "si_snr"):
        np.testing.assert_allclose(record["per_image"]["estimate"][key], estimate[key],
                                   rtol=1e-6)
        np.testing.assert_allclose(record["per_image"]["baseline"][key], baseline[key],
                                   rtol=1e-9)
    from funknn_fast.prior import solvers
    from funknn_fast.prior.generator import load_prior
    from funknn_fast.prior.phantoms import phantom_parameters, rasterize

    prior = load_prior(prior_path)
    rendered = torch.cat([solvers.render_solution("prior", result, prior, 20)
                          for result in results])
    truth = rasterize(phantom_parameters([0, 1], "test", 0), 20, 0.15)
    np.testing.assert_allclose(record["per_image"]["estimate_at_eval_size"]["si_snr"],
                               solvers.metrics(rendered, truth)["si_snr"], rtol=1e-6)
    assert "funknn_of_baseline_at_eval_size" in record["per_image"]


def test_solve_rejects_bad_sampling_options(prior_path, tmp_path, capsys):
    base = ["solve", "--weights", str(prior_path), "--out-dir", str(tmp_path)]
    assert main([*base[:1], "ct", *base[1:], "--sampling", "scattered"]) == 2
    assert "--sampling" in capsys.readouterr().err
    assert main([*base[:1], "derivatives", *base[1:], "--samples", "100"]) == 2
    assert "samples" in capsys.readouterr().err
    assert main([*base[:1], "derivatives", *base[1:], "--eval-size", "0"]) == 2
    assert "--eval-size" in capsys.readouterr().err
