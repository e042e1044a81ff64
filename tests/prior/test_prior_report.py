"""benchmarks/prior_report.py: grouping of solve records, means, spreads, paired wins."""

import json
import math

import pytest


def _record(problem, method, seed, estimate, baseline, split="test", legacy=False):
    """A solve JSON for images 0..len-1: ``estimate`` / ``baseline`` are lists of (SNR,
    SI-SNR); the other diagnostics repeat the baseline."""

    def scores(pairs):
        return {"snr": [p[0] for p in pairs], "si_snr": [p[1] for p in pairs]}

    per_image = {"baseline": scores(baseline), "funknn_of_baseline": scores(baseline),
                 "autoencoder_projection": scores(baseline)}
    record = {"problem": problem, "baseline_method": "FBP" if problem == "ct" else "Poisson",
              "indices": list(range(len(estimate))), "per_image": per_image,
              "config": {"size": 64, "seed": seed}, "command": f"funknn solve {problem}",
              "threads": 1, "workers": 1}
    if legacy:  # issue 7 files: no method / split / seed keys, the estimate under "prior"
        per_image["prior"] = scores(estimate)
    else:
        per_image["estimate"] = scores(estimate)
        record.update(method=method, split=split, seed=seed)
    return record


def test_collect_summarize_and_paired_wins(prior_report):
    records = [
        _record("ct", "prior", 0, [(20.0, 0), (24.0, 0)], [(10.0, 0), (10.0, 0)], legacy=True),
        _record("ct", "prior", 1, [(22.0, 0), (26.0, 0)], [(10.0, 0), (12.0, 0)]),
        _record("ct", "tv", 0, [(21.0, 0), (20.0, 0)], [(10.0, 0), (10.0, 0)]),
    ]
    table = prior_report.collect(records)
    assert set(table["ct"]) == {"prior", "tv", "fbp", "funknn-of-baseline",
                                "autoencoder-projection"}
    stats = prior_report.summarize(table["ct"]["prior"], "snr")
    assert (stats["images"], stats["draws"], stats["pairs"]) == (2, 2, 4)
    assert stats["mean"]["snr"] == pytest.approx(23.0)
    assert stats["mean"]["detail_snr"] is None
    # per-image means 21 and 25: sd over images 2 sqrt(2); sd over draws sqrt(2) for both
    assert stats["sd_images"] == pytest.approx(2 * math.sqrt(2))
    assert stats["sd_draws"] == pytest.approx(math.sqrt(2))
    versus = prior_report.paired(table["ct"]["prior"], table["ct"]["tv"], "snr")
    assert versus == {"pairs": 2, "margin": pytest.approx(1.5), "wins": 1,
                      "sd": pytest.approx(math.sqrt(2 * 2.5**2))}
    fbp = prior_report.paired(table["ct"]["prior"], table["ct"]["fbp"], "snr")
    assert (fbp["pairs"], fbp["wins"], fbp["margin"]) == (4, 4, pytest.approx(12.5))
    words, met = prior_report.acceptance("ct", table["ct"])
    assert met is False and "prior - tv = +1.50 dB" in words and "target >= +3 dB" in words


def test_acceptance_needs_the_prior_ahead_on_most_pairs(prior_report):
    """A positive mean margin carried by one image (prior better on 1 of 3) is not a win."""
    baseline = [(0.0, 10.0)] * 3
    records = [_record("sparse-derivatives", "prior", 0, [(0.0, 20.0), (0.0, 8.0), (0.0, 8.0)],
                       baseline),
               _record("sparse-derivatives", "tv-poisson", 0, [(0.0, 10.5)] * 3, baseline)]
    table = prior_report.collect(records)["sparse-derivatives"]
    words, met = prior_report.acceptance("sparse-derivatives", table)
    assert "prior - tv-poisson = +1.50 dB" in words and "better on 1;" in words
    assert met is False and "not met" in words
    records[0] = _record("sparse-derivatives", "prior", 0, [(0.0, 11.0)] * 3, baseline)
    words, met = prior_report.acceptance("sparse-derivatives",
                                         prior_report.collect(records)["sparse-derivatives"])
    assert met is True and words.endswith(": met")


def test_report_keeps_the_splits_apart(prior_report, tmp_path):
    weights = tmp_path / "prior"
    weights.with_suffix(".json").write_text(json.dumps({
        "phantoms": {"size": 32, "train_count": 20000, "edge_width": 0.06},
        "training": {"funknn": {"summary": {"steps_done": 7, "seconds": 12.0,
                                             "cpu_seconds": 11.0, "final_loss": 0.5}}},
    }))
    results = tmp_path / "results"
    results.mkdir()
    files = {"derivatives.json": _record("derivatives", "prior", 0, [(3.0, 31.0), (3.0, 28.0)],
                                         [(4.0, 29.0), (4.0, 30.0)]),
             "derivatives-tv-poisson.json": _record("derivatives", "tv-poisson", 0,
                                                    [(4.0, 29.5), (4.0, 30.5)],
                                                    [(4.0, 29.0), (4.0, 30.0)]),
             "derivatives-tv-poisson-seed1.json": _record(
                 "derivatives", "tv-poisson", 1, [(0.0, 99.0)], [(0.0, 99.0)], "validation")}
    for name, record in files.items():
        (results / name).write_text(json.dumps(record))
    out = tmp_path / "prior.md"
    prior_report.main(["--weights", str(weights), "--results", str(results), "--out", str(out)])
    text = out.read_text()
    assert "| funknn | 7 | 12 | 11 | 0.5 |" in text
    assert "| tv-poisson | 2 x 1 | 4.00 | 30.00 | - | 0.71 | - | -0.50 (sd 2.83) | 1 / 2 |" in text
    assert "| **prior** | 2 x 1 | 3.00 | 29.50 |" in text
    assert "prior - tv-poisson = -0.50 dB shift-invariant SNR over 2" in text
    assert "99.00" not in text  # the validation record stays out of the test table
    with pytest.raises(SystemExit, match="EVALUATE=1"):
        prior_report.report(weights, tmp_path)


def test_records_off_todays_solver_defaults_are_named(prior_report):
    from dataclasses import asdict

    from funknn_fast.prior.solvers import default_config

    current = _record("ct", "prior", 0, [(20.0, 0)], [(10.0, 0)])
    current["config"] = asdict(default_config("ct"))
    now = current["config"]["finetune_steps"]
    old = dict(current, config={**current["config"], "finetune_steps": now + 7})
    assert prior_report.stale_settings(current) == {}
    assert prior_report.stale_settings(old) == {"finetune_steps": (now + 7, now)}
    assert prior_report.stale_settings(dict(old, method="tv")) == {}  # no solver stages
    assert prior_report.stale_notes([current, old], "ct") == [
        f"* `prior` (seed 0) ran with finetune_steps {now + 7} (now {now})."]
    assert prior_report.stale_notes([current, old], "derivatives") == []


def test_collect_refuses_records_of_different_priors(prior_report):
    """Every record carries FBP and the AE projection of the same pairs: a second prior's
    records in the folder disagree there and must not be merged into one table."""
    prior = _record("ct", "prior", 0, [(26.0, 0)], [(10.0, 0)])
    same = _record("ct", "tv", 0, [(24.0, 0)], [(10.004, 0)])  # float32 noise: merged
    assert prior_report.collect([prior, same])["ct"]["fbp"][(0, 0)]["snr"] == 10.004
    other = _record("ct", "tv", 0, [(24.0, 0)], [(10.5, 0)])
    with pytest.raises(ValueError, match=r"ct fbp snr of image 0, seed 0: 10\.000000 in a\.json "
                                         r"but 10\.500000 in b\.json"):
        prior_report.collect([prior, other], ["a.json", "b.json"])
    other["seed"] = 1  # another noise draw: another pair
    assert set(prior_report.collect([prior, other])["ct"]["fbp"]) == {(0, 0), (0, 1)}
