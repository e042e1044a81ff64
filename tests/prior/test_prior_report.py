"""benchmarks/prior_report.py: acceptance bars of issue 7 and the tables it writes."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "prior_report.py"


@pytest.fixture(scope="module")
def prior_report():
    spec = importlib.util.spec_from_file_location("prior_report", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record(problem, prior, baseline, method):
    """A solve JSON with per-image (SNR, SI-SNR) pairs of the prior and the baseline."""

    def scores(pairs):
        return {"snr": [p[0] for p in pairs], "si_snr": [p[1] for p in pairs]}

    def mean(pairs):
        return {key: sum(values) / len(values) for key, values in scores(pairs).items()}

    return {"problem": problem, "baseline_method": method, "indices": list(range(len(prior))),
            "mean": {"prior": mean(prior), "baseline": mean(baseline),
                     "autoencoder_projection": mean(prior)},
            "per_image": {"prior": scores(prior), "baseline": scores(baseline)},
            "seconds_per_image": [10.0] * len(prior), "config": {"size": 64},
            "command": f"funknn solve {problem}", "threads": 1, "workers": 2}


@pytest.mark.parametrize(
    ("problem", "prior", "baseline", "passed"),
    [
        ("ct", [(15.0, 15.0), (16.0, 16.0)], [(10.0, 11.0), (10.0, 11.0)], True),
        ("ct", [(14.0, 20.0), (15.0, 20.0)], [(10.0, 11.0), (10.0, 11.0)], False),  # +4.5 dB
        ("derivatives", [(3.0, 31.0), (3.0, 29.5)], [(4.0, 29.0), (4.0, 30.0)], True),
        ("derivatives", [(3.0, 29.0), (3.0, 29.0)], [(4.0, 29.0), (4.0, 30.0)], False),
        ("sparse-derivatives", [(3.0, 16.0), (3.0, 14.5)], [(4.0, 14.0), (4.0, 15.0)], True),
        ("sparse-derivatives", [(3.0, 14.9), (3.0, 14.9)], [(4.0, 5.0), (4.0, 5.0)], False),
    ],
)
def test_acceptance_bars(prior_report, problem, prior, baseline, passed):
    method = "FBP" if problem == "ct" else "Poisson"
    words, ok = prior_report.acceptance(problem, _record(problem, prior, baseline, method))
    assert ok is passed
    assert method in words


def test_report_writes_training_and_result_tables(prior_report, tmp_path):
    weights = tmp_path / "prior"
    weights.with_suffix(".json").write_text(json.dumps({
        "phantoms": {"size": 32, "train_count": 20000, "edge_width": 0.06},
        "training": {"funknn": {"summary": {"steps_done": 7, "seconds": 12.0,
                                             "cpu_seconds": 11.0, "final_loss": 0.5}}},
    }))
    results = tmp_path / "results"
    results.mkdir()
    record = _record("derivatives", [(3.0, 31.0), (3.0, 28.0)], [(4.0, 29.0), (4.0, 30.0)],
                     "Poisson")
    (results / "derivatives.json").write_text(json.dumps(record))
    out = tmp_path / "prior.md"
    prior_report.main(["--weights", str(weights), "--results", str(results), "--out", str(out)])
    text = out.read_text()
    assert "| funknn | 7 | 12 | 11 | 0.5 |" in text
    # mean SI-SNR 29.5, not above Poisson's 29.5, although the prior wins on image 0
    row = "| 3.00 / 29.50 | Poisson 4.00 / 29.50 | 3.00 | - | 1 / 2 (shift-invariant SNR) | FAIL"
    assert row in text
    assert "`funknn solve derivatives` (2 worker(s) x 1 thread)" in text


def test_report_without_results_says_what_to_run(prior_report, tmp_path):
    weights = tmp_path / "prior"
    weights.with_suffix(".json").write_text(json.dumps({"phantoms": {}}))
    with pytest.raises(SystemExit, match="EVALUATE=1"):
        prior_report.report(weights, tmp_path)
