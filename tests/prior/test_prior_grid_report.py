"""benchmarks/prior_grid.py: settings of the solve records, the table's means, spreads and
paired differences on the common grids."""


def _record(size, eval_size, seed, estimate, at_eval, baseline, samples=None):
    """A prior solve record for images 0 and 1 (SI-SNR lists; SNR = SI-SNR - 1)."""

    def scores(values):
        return {"snr": [v - 1 for v in values], "si_snr": list(values)}

    record = {"problem": "derivatives", "method": "prior", "split": "test", "seed": seed,
              "indices": [0, 1], "config": {"size": size}, "eval_size": eval_size,
              "sampling": "grid" if samples is None else "scattered", "samples": samples,
              "per_image": {"estimate": scores(estimate), "baseline": scores(baseline),
                            "funknn_of_baseline": scores(baseline),
                            "estimate_at_eval_size": scores(at_eval)}}
    return record


def test_the_table_pairs_every_setting_with_the_64_grid_on_both_grids(prior_grid):
    records = [
        _record(64, 128, 0, [30, 20], [31, 21], [28, 18]),
        _record(64, 128, 1, [32, 22], [33, 23], [28, 18]),
        _record(128, 64, 0, [35, 19], [34, 18], [40, 30]),
        _record(128, 64, 1, [37, 19], [35, 18], [40, 30]),
        _record(64, 128, 0, [25, 15], [26, 16], [20, 10], samples=4096),
        _record(64, 128, 1, [27, 17], [28, 18], [20, 10], samples=4096),
    ]
    tv = _record(64, 128, 0, [29, 19], [0, 0], [28, 18])
    tv["method"] = "tv-poisson"
    records += [tv, dict(tv, method="bicubic")]  # bicubic ignored: only prior and tv-poisson
    table = prior_grid.collect(records)["derivatives"]
    assert sorted(table) == ["grid n=128", "grid n=64", "scattered M=4096 (n=64)"]
    assert sorted(table["grid n=64"]) == ["baseline", "funknn_of_baseline", "prior",
                                          "prior@128", "prior@64", "tv_poisson"]
    assert prior_grid.setting(records[4]) == "scattered M=4096 (n=64)"
    lines = prior_grid.problem_table("derivatives", table)
    rows = {line.split(" | ")[0][2:]: line.rstrip(" |").split(" | ")[1:] for line in lines[4:]}
    assert list(rows) == ["grid n=64", "grid n=128", "scattered M=4096 (n=64)"]
    # columns: baseline, TV-Poisson, FunkNN(avg.), prior (own), at 64, at 128, diff 64, diff 128
    # grid 64: prior 30/32 and 20/22 -> mean 26, image means 31 and 21 (sd 7.07), draw sd 1.41
    assert rows["grid n=64"][3] == "26.00 ± 7.07 (1.41)"
    assert rows["grid n=64"][4] == rows["grid n=64"][3]  # own grid = at 64
    assert rows["grid n=64"][5].startswith("27.00 ± 7.07")
    assert rows["grid n=64"][1] == "24.00 ± 7.07 (-)" and rows["grid n=128"][1] == "-"
    # grid 128 at 64: 34/35, 18/18 against 30/32, 20/22 -> +4, +3, -2, -4
    assert rows["grid n=128"][4].startswith("26.25")
    assert rows["grid n=128"][6] == "+0.25 (2/4)"
    # at 128 (its own grid): 35/37, 19/19 against 31/33, 21/23 -> +4, +4, -2, -4
    assert rows["grid n=128"][3] == rows["grid n=128"][5]
    assert rows["grid n=128"][7] == "+0.50 (2/4)"
    assert rows["scattered M=4096 (n=64)"][0].startswith("15.00")
    assert rows["scattered M=4096 (n=64)"][6] == "-5.00 (0/4)"
    assert "2 images x 2 draws" in lines[0]
