"""Sweeps and repeats: the grid (pure), cells as items (fake scripts)."""

from __future__ import annotations

import json
import textwrap

import pytest
from fakejobs import fake, write_files
from scipy import stats as sps  # before pytester's runs: numpy loads once a process

from training_plugin.collect import sweeps
from training_plugin.collect.specs import MSG_NOT_REPEATED

pytest_plugins = ["pytester"]

#: A fake job with a seed (default 42) and a learning rate; its roc_auc is a function of both,
#: and it fails when FAIL_SEED names its seed.
SEEDED = fake(
    """
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--output-dir")
    """,
    post="""
    auc = 0.5 + ns.lr + ns.seed / 1000
    if os.path.exists(os.path.join(os.getcwd(), f"fail_{ns.seed}")):
        sys.exit(3)
    json.dump({"primary_metric": "roc_auc", "metrics": {"roc_auc": auc, "accuracy": 0.7}},
              open(os.path.join(out, "metrics.json"), "w"))
    """,
    metrics=False,
)
#: A fake job without a seed flag or --lr.
PLAIN = fake('p.add_argument("--epochs", type=int)')


def esc(text: str) -> str:
    """``text`` as an fnmatch pattern that matches itself (brackets escaped)."""
    return text.replace("[", "\0").replace("]", "[]]").replace("\0", "[[]")


def make(pytester: pytest.Pytester, files: dict[str, str], ini: str = "") -> None:
    pytester.makeini("[pytest]\ntestpaths = tests\n" + textwrap.dedent(ini))
    write_files(pytester.path, files)


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "training_plugin", *args)


def received(pytester: pytest.Pytester, job: str, cell: str) -> list[str]:
    path = pytester.path / "training-results" / job / cell / "received.json"
    return json.loads(path.read_text())["argv"]


# -- parsing and the grid (pure) ---------------------------------------------------------------

def texts(axis: sweeps.Axis) -> list[str]:
    return [v.text for v in axis.values]


def test_a_list_keeps_its_text_and_reads_numbers() -> None:
    axis = sweeps.parse_sweep("lr=0.001,3e-4,adam")
    assert axis.name == "lr" and texts(axis) == ["0.001", "3e-4", "adam"]
    assert [v.value for v in axis.values] == [0.001, 3e-4, "adam"]


@pytest.mark.parametrize("text,values", [("seed=0:5", [0, 1, 2, 3, 4]),
                                         ("seed=10:4:-3", [10, 7]), ("n=2:7:2", [2, 4, 6])])
def test_a_range_is_pythons_range(text: str, values: list[int]) -> None:
    assert [v.value for v in sweeps.parse_sweep(text).values] == values


@pytest.mark.parametrize("text,message", [
    ("lr", "expected NAME=V1,V2"), ("lr=", "has no values"), ("lr=,", "has no values"),
    ("lr=1,,2", "expected NAME=V1,V2"), ("seed=5:5", "is not a range"),
    ("seed=0:5:0", "is not a range"), ("seed=a:b", "is not a range"),
    ("seed=1:2:3:4", "is not a range"), ("lr=a/b", "cannot name a cell"),
    ("lr=1,1", "twice"), ("1x=2", "expected NAME"), ("output-dir=a,b", "cannot be swept"),
])
def test_bad_sweeps_are_usage_errors(text: str, message: str) -> None:
    with pytest.raises(pytest.UsageError, match=message):
        sweeps.parse_sweep(text)


def test_table_axes_lists_and_ranges_and_bad_values() -> None:
    axes = sweeps.table_axes({"lr": [0.001, 0.0003], "seed": "0:3", "aug": [True]}, "t")
    assert [(a.name, texts(a)) for a in axes] == [
        ("lr", ["0.001", "0.0003"]), ("seed", ["0", "1", "2"]), ("aug", ["true"])]
    for bad in ({"lr": []}, {"lr": [[1]]}, {"lr": 1}, "x", {"lr": [float("nan")]}):
        with pytest.raises(pytest.UsageError):
            sweeps.table_axes(bad, "t")


def test_the_command_line_wins_per_parameter_and_the_grid_is_the_product() -> None:
    table = sweeps.table_axes({"lr": [1, 2], "seed": [0, 1, 2]}, "t")
    axes = sweeps.combine(table, [sweeps.parse_sweep("seed=7,8"), sweeps.parse_sweep("wd=0")])
    assert [(a.name, texts(a)) for a in axes] == [("lr", ["1", "2"]), ("seed", ["7", "8"]),
                                                  ("wd", ["0"])]
    cells = sweeps.cells(axes)
    assert [sweeps.cell_name(c) for c in cells] == [
        "lr_1-seed_7-wd_0", "lr_1-seed_8-wd_0", "lr_2-seed_7-wd_0", "lr_2-seed_8-wd_0"]


def test_a_parameter_twice_repeats_with_seed_and_the_cell_limit() -> None:
    with pytest.raises(pytest.UsageError, match="given twice"):
        sweeps.Sweep(axes=(sweeps.parse_sweep("lr=1"), sweeps.parse_sweep("lr=2")))
    with pytest.raises(pytest.UsageError, match="--repeats and --sweep seed"):
        sweeps.Sweep(axes=(sweeps.parse_sweep("seed=1,2"),), repeats=3)
    sweeps.check_count({"a": 600, "b": 400}, 1000)
    with pytest.raises(pytest.UsageError, match="makes 1001 cells .a: 601, b: 400"):
        sweeps.check_count({"a": 601, "b": 400}, 1000)
    with pytest.raises(pytest.UsageError, match="training_max_cells"):
        sweeps.parse_max_cells("0")


# -- cells are items -------------------------------------------------------------------------

def test_cells_ids_commands_outputs_and_k_selection(pytester: pytest.Pytester) -> None:
    make(pytester, {"train_mri.py": SEEDED, "train_plain.py": PLAIN})
    listing = run(pytester, "--sweep", "lr=0.001,0.0003", "--sweep", "seed=0:3", "--collect-only")
    assert listing.ret == 0
    listing.stdout.fnmatch_lines([
        "training: 2 jobs (6 cells) from .; output: *",
        ("job mri[[]lr_0.001-seed_0[]]: * train_mri.py --seed 0 --lr 0.001 --output-dir "
         "*/training-results/mri/lr_0.001-seed_0"),  # the declared order
        "job mri[[]lr_0.0003-seed_2[]]: * train_mri.py --seed 2 --lr 0.0003 *",
        "job plain: * train_plain.py",
        "    note: not swept: no --lr",
        "sweep: 6 cells of 1 job (mri 6)",
        ("configurations: 2, each a testcase of its own after its cells: "
        "mri[[]lr_0.001[]] (3 seeds), mri[[]lr_0.0003[]] (3 seeds)"),
    ])
    # -k: by fragments, and by the whole id
    result = run(pytester, "--sweep", "lr=0.001,0.0003", "--sweep", "seed=0:3",
                 "-k", "mri and seed_2")
    result.assert_outcomes(passed=2)
    assert received(pytester, "mri", "lr_0.001-seed_2") == [
        "--seed", "2", "--lr", "0.001", "--output-dir",
        str(pytester.path / "training-results" / "mri" / "lr_0.001-seed_2")]
    result = run(pytester, "--sweep", "lr=0.001,0.0003", "--sweep", "seed=0:3",
                 "-k", "mri[lr_0.0003-seed_1]", "-p", "no:randomly")
    # the cell, and its configuration's testcase with seed 2 kept from the last run
    result.assert_outcomes(passed=2)
    summary = json.loads((pytester.path / "training-results" / "summary.json").read_text())
    (row,) = summary["jobs"]
    assert (row["id"], row["job"], row["cell"], row["params"]) == (
        "mri[lr_0.0003-seed_1]", "mri", "lr_0.0003-seed_1", {"lr": 0.0003, "seed": 1})
    assert row["nodeid"] == "train_mri.py::mri[lr_0.0003-seed_1]"
    assert row["metrics"]["roc_auc"] == pytest.approx(0.5 + 0.0003 + 0.001)
    history = [json.loads(line) for line in
               (pytester.path / "training-results" / "history.jsonl").read_text().splitlines()]
    assert (history[-1]["job"], history[-1]["cell"], history[-1]["params"]) == (
        "mri[lr_0.0003-seed_1]", "lr_0.0003-seed_1", {"lr": 0.0003, "seed": 1})


def test_repeats_start_at_the_jobs_default_seed_or_seed(pytester: pytest.Pytester) -> None:
    make(pytester, {"train_mri.py": SEEDED, "train_plain.py": PLAIN})
    listing = run(pytester, "--repeats", "3", "--collect-only")
    listing.stdout.fnmatch_lines([
        "job mri[[]seed_42[]]: * --seed 42 *", "job mri[[]seed_44[]]: * --seed 44 *",
        "job plain: *", f"    note: {MSG_NOT_REPEATED}", "sweep: 3 cells of 1 job (mri 3)"])
    listing = run(pytester, "--sweep", "seed=1,2", "--seed", "7", "--collect-only")
    listing.stdout.fnmatch_lines(["job mri[[]seed_1[]]: * --seed 1 *"])
    listing.stdout.fnmatch_lines([f"*{sweeps.MSG_SEED_SWEPT.format(seed=7)}*"])
    listing = run(pytester, "--repeats", "2", "--seed", "7", "--collect-only")
    listing.stdout.fnmatch_lines(["job mri[[]seed_7[]]: *", "job mri[[]seed_8[]]: *"])
    assert "seed_9" not in listing.stdout.str()
    result = run(pytester, "--repeats", "2")
    result.assert_outcomes(passed=4)  # 2 cells, plain, the configuration mri
    assert sorted(p.name for p in (pytester.path / "training-results" / "mri").iterdir()) == [
        "seed_42", "seed_43"]


def test_table_sweep_times_command_line_command_line_wins(pytester: pytest.Pytester) -> None:
    make(pytester, {
        "train_mri.py": SEEDED,
        "pyproject.toml": """
            [tool.training_plugin.jobs.mri]
            sweep = { lr = [0.001, 0.0003], seed = [0, 1, 2] }
        """,
    })
    listing = run(pytester, "--collect-only")
    listing.stdout.fnmatch_lines(["sweep: 6 cells of 1 job (mri 6)"])
    listing = run(pytester, "--collect-only", "--sweep", "seed=5,6", "--sweep", "wd=1,2")
    # the script has no --wd: that parameter does not vary it
    listing.stdout.fnmatch_lines(["job mri[[]lr_0.001-seed_5[]]: *", "    note: not swept: no --wd",
                                  "sweep: 4 cells of 1 job (mri 4)"])
    listing = run(pytester, "--collect-only", "--repeats", "2")
    listing.stdout.fnmatch_lines(["job mri[[]lr_0.001-seed_42[]]: *",
                                  "sweep: 4 cells of 1 job (mri 4)"])


@pytest.mark.parametrize("args,ini,message", [
    (("--sweep", "seed=0:3"), "training_max_cells = 2",
     "*the sweep makes 3 cells (mri: 3), more than training_max_cells = 2*"),
    (("--sweep", "seed=3:1"), "", "*--sweep seed: seed=3:1 is not a range*"),
    (("--sweep", "seed=a,b"), "", "*--sweep seed expects a whole number, got 'a'*"),
    (("--sweep", "lr=,"), "", "*--sweep lr: lr has no values*"),
    (("--repeats", "0"), "", "*--repeats must be at least 1*"),
])
def test_usage_errors(pytester: pytest.Pytester, args: tuple[str, ...], ini: str,
                      message: str) -> None:
    make(pytester, {"train_mri.py": SEEDED}, ini)
    result = run(pytester, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert not (pytester.path / "training-results").exists()


def test_a_bad_table_sweep_is_a_usage_error(pytester: pytest.Pytester) -> None:
    make(pytester, {"train_mri.py": SEEDED, "pyproject.toml": """
        [tool.training_plugin.jobs.mri]
        sweep = { lr = [] }
    """})
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*[[]tool.training_plugin.jobs.mri[]] sweep lr: lr has no values*"])


def test_lf_reruns_only_the_failed_cell(pytester: pytest.Pytester) -> None:
    make(pytester, {"train_mri.py": SEEDED, "fail_1": ""})
    first = run(pytester, "--sweep", "seed=0:3", "-p", "no:randomly")
    first.assert_outcomes(passed=3, failed=1)  # the configuration's testcase passes
    (pytester.path / "fail_1").unlink()
    again = run(pytester, "--sweep", "seed=0:3", "--lf", "-p", "no:randomly")
    # the rerun cell, and the configuration's testcase with the two cells kept from the last run
    again.assert_outcomes(passed=2, deselected=2)
    aucs = [0.5 + 0.1 + s / 1000 for s in range(3)]
    again.stdout.fnmatch_lines([
        "mri[[]seed_1[]]*passed*",
        f"  mri*mean of 3/3*roc_auc {sum(aucs) / 3:.4f} * n=3*2 of 3 cells kept from the last run"])
    summary = json.loads((pytester.path / "training-results" / "summary.json").read_text())
    (conf,) = summary["configurations"]
    assert conf["kept"] == ["train_mri.py::mri[seed_0]", "train_mri.py::mri[seed_2]"]
    assert conf["metrics"]["roc_auc"]["values"] == pytest.approx(dict(zip("012", aucs)))
    assert [row["id"] for row in summary["jobs"]] == ["mri[seed_1]"]


def test_cells_under_xdist(pytester: pytest.Pytester) -> None:
    make(pytester, {"train_mri.py": SEEDED})
    result = pytester.runpytest_subprocess("-p", "training_plugin", "--sweep", "seed=0:4",
                                           "-n", "2")
    result.assert_outcomes(passed=5)  # 4 cells, 1 configuration
    out = pytester.path / "training-results" / "mri"
    assert sorted(p.name for p in out.iterdir()) == [f"seed_{i}" for i in range(4)]
    for i in range(4):
        assert received(pytester, "mri", f"seed_{i}")[:2] == ["--seed", str(i)]


# -- configurations and aggregates -------------------------------------------------------------

def test_stats_against_numbers_computed_here() -> None:
    from training_plugin import aggregate

    values = [0.81, 0.84, 0.79, 0.86]
    s = aggregate.stats_of(values, ["0", "1", "2", "3"])
    mean = sum(values) / 4
    sd = (sum((v - mean) ** 2 for v in values) / 3) ** 0.5
    half = sps.t.ppf(0.975, 3) * sd / 4 ** 0.5
    assert (s.n, s.min, s.max) == (4, 0.79, 0.86)
    assert s.mean == pytest.approx(mean) and s.sd == pytest.approx(sd)
    assert s.ci95 == pytest.approx((mean - half, mean + half))
    assert half == pytest.approx(3.182446 * sd / 2, rel=1e-6)  # t(0.975, 3) from the table
    one = aggregate.stats_of([0.5])
    assert (one.n, one.mean, one.sd, one.ci95) == (1, 0.5, None, None)


def test_configurations_ids_and_failed_seeds() -> None:
    from training_plugin import aggregate
    from training_plugin.results import JobRecord

    def rec(cell: str, params: dict, outcome: str = "passed", auc: float = 0.8) -> JobRecord:
        return JobRecord(id=f"m[{cell}]", nodeid=f"t.py::m[{cell}]", script="t.py", argv=[],
                         resolved_argv=[], output_dir="", log="", outcome=outcome, job="m",
                         cell=cell, params=params, metrics={"auc": auc} if outcome == "passed"
                         else {}, primary_metric="auc")

    recs = [rec(f"lr_3e-4-seed_{s}", {"lr": 3e-4, "seed": s}, auc=0.7 + s / 10) for s in (0, 1)]
    recs += [rec("lr_3e-4-seed_2", {"lr": 3e-4, "seed": 2}, outcome="failed")]
    recs += [rec("seed_0-wd_1", {"seed": 0, "wd": 1}), rec("seed_1-wd_1", {"seed": 1, "wd": 1})]
    recs += [rec("lr_1", {"lr": 1})]  # no seed: no configuration
    confs = aggregate.configurations(recs)
    assert [c.id for c in confs] == ["m[lr_3e-4]", "m[wd_1]"]
    first = confs[0]
    assert (first.seeds, first.failed_seeds, first.n, first.params) == (
        ["0", "1", "2"], ["2"], 2, {"lr": 3e-4})
    assert first.metrics["auc"].mean == pytest.approx(0.75)
    assert first.nodeid == "t.py::m[lr_3e-4]"


def test_aggregates_in_summary_terminal_and_junit(pytester: pytest.Pytester) -> None:
    import xml.etree.ElementTree as ET

    make(pytester, {"train_mri.py": SEEDED, "fail_3": ""})
    result = run(pytester, "--sweep", "lr=0.1,0.2", "--sweep", "seed=0:4", "--junitxml=j.xml",
                 "-p", "no:randomly")
    # 8 cells (2 failed: seed 3) and 2 configuration testcases
    result.assert_outcomes(passed=8, failed=2)
    aucs = [0.5 + 0.1 + s / 1000 for s in (0, 1, 2)]
    mean = sum(aucs) / 3
    sd = (sum((a - mean) ** 2 for a in aucs) / 2) ** 0.5
    half = sps.t.ppf(0.975, 2) * sd / 3 ** 0.5
    result.stdout.fnmatch_lines([
        "mri[[]lr_0.1-seed_3[]]*failed*",
        (f"  mri[[]lr_0.1[]]*mean of 3/4*roc_auc {mean:.4f} ± {sd:.4f} sd, 95% CI "
        f"[[]{mean - half:.4f}, {mean + half:.4f}[]], n=3*failed seeds: 3"),
    ])
    summary = json.loads((pytester.path / "training-results" / "summary.json").read_text())
    conf = summary["configurations"][0]
    assert (conf["id"], conf["params"], conf["failed_seeds"]) == ("mri[lr_0.1]", {"lr": 0.1}, ["3"])
    auc = conf["metrics"]["roc_auc"]
    assert auc["n"] == 3 and auc["mean"] == pytest.approx(mean) and auc["sd"] == pytest.approx(sd)
    assert auc["ci95"] == pytest.approx([mean - half, mean + half])
    assert auc["values"] == pytest.approx({"0": aucs[0], "1": aucs[1], "2": aucs[2]})
    cases = {c.get("name"): c for c in ET.parse(pytester.path / "j.xml").iter("testcase")}
    props = {p.get("name"): p.get("value") for p in cases["mri[lr_0.1]"].iter("property")}
    assert props["n"] == "3" and props["failed_seeds"] == "3"
    assert float(props["roc_auc.mean"]) == pytest.approx(mean, abs=1e-6)
    assert float(props["roc_auc.ci95_low"]) == pytest.approx(mean - half, abs=1e-6)


def test_a_mean_gate_fails_its_configuration_testcase(pytester: pytest.Pytester) -> None:
    import xml.etree.ElementTree as ET

    make(pytester, {"train_mri.py": SEEDED, "pyproject.toml": """
        [tool.training_plugin.jobs.mri]
        min_mean = { roc_auc = 0.65 }
        min = { roc_auc = 0.5 }
    """})
    result = run(pytester, "--sweep", "lr=0.1,0.2", "--repeats", "2", "--junitxml=j.xml")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=5, failed=1)  # 4 cells, mri[lr_0.2] passes, mri[lr_0.1] fails
    story = ("configuration 'mri[lr_0.1]': roc_auc mean 0.6425 over 2 seeds is below the "
             "minimum mean 0.65 (pyproject.toml [tool.training_plugin.jobs.mri] min_mean)")
    result.stdout.fnmatch_lines([f"training: {esc(story)}", "FAILED train_mri.py::mri[[]lr_0.1[]] - *"])
    cases = {c.get("name"): c for c in ET.parse(pytester.path / "j.xml").iter("testcase")}
    assert cases["mri[lr_0.1]"].find("failure") is not None
    assert cases["mri[lr_0.2]"].find("failure") is None
    assert "mri[lr_0.1-seed_42]" in cases


# -- baselines that know the noise -------------------------------------------------------------

#: SEEDED with noise per seed (file ``noise``: its scale) and a shift down (file ``shift``).
NOISY = SEEDED.replace(
    "auc = 0.5 + ns.lr + ns.seed / 1000",
    "scale = float(open('noise').read()) if os.path.exists('noise') else 0.0\n"
    "shift = float(open('shift').read()) if os.path.exists('shift') else 0.0\n"
    "auc = 0.5 + ns.lr + ((ns.seed * 7919) % 13 - 6) / 100 * scale - shift")


def noisy_values(scale: float, shift: float, seeds: range) -> list[float]:
    return [0.5 + 0.1 + ((s * 7919) % 13 - 6) / 100 * scale - shift for s in seeds]


@pytest.mark.parametrize("scale,significant", [(0.01, True), (1.0, False)])
def test_a_drop_of_the_mean_fails_only_when_significant(pytester: pytest.Pytester, scale: float,
                                                        significant: bool) -> None:
    import xml.etree.ElementTree as ET

    make(pytester, {"train_mri.py": NOISY, "noise": str(scale)}, "training_tolerance = 0.02\n")
    saved = run(pytester, "--sweep", "seed=0:5", "--save-baseline")
    saved.assert_outcomes(passed=6)
    base = json.loads((pytester.path / "training-baseline.json").read_text())
    entry = base["configurations"]["mri"]["metrics"]["roc_auc"]
    ref = noisy_values(scale, 0.0, range(5))
    assert entry["n"] == 5 and entry["values"] == pytest.approx(dict(zip("01234", ref)))
    assert entry["mean"] == pytest.approx(sum(ref) / 5)
    assert entry["sd"] == pytest.approx(sps.tstd(ref))

    (pytester.path / "shift").write_text("0.03")
    result = run(pytester, "--sweep", "seed=0:5", "--compare", "--junitxml=j.xml")
    now = noisy_values(scale, 0.03, range(5))
    t, p = sps.ttest_ind(now, ref, equal_var=False, alternative="less")
    story = (f"job 'mri': roc_auc mean {sum(now) / 5:.3f} over 5 seeds is 0.030 below the "
             f"baseline's {sum(ref) / 5:.3f} over 5 seeds (Welch t = {t:.1f}, p = {p:.2g}; "
             f"training-baseline.json); tolerance 0.02 (tox.ini training_tolerance)")
    cases = {c.get("name"): c for c in ET.parse(pytester.path / "j.xml").iter("testcase")}
    verdict = cases["baseline"]
    if significant:
        assert p < 0.05
        assert result.ret == pytest.ExitCode.TESTS_FAILED
        result.assert_outcomes(passed=6, failed=1)  # the cells pass: one seed is no evidence
        result.stdout.fnmatch_lines([f"training: {esc(story)}",
                                     "FAILED train_mri.py::mri::baseline - *"])
        assert verdict.find("failure") is not None
    else:
        assert p >= 0.05
        assert result.ret == pytest.ExitCode.OK
        result.assert_outcomes(passed=7)
        result.stdout.fnmatch_lines([(f"training: warning: {esc(story)}; not significant at "
                                     "alpha 0.05: not a regression")])
        assert verdict.find("failure") is None
    props = {p.get("name"): p.get("value") for p in verdict.iter("property")}
    assert float(props["welch.roc_auc.p"]) == pytest.approx(p, abs=1e-6)


def test_the_html_report_pivots_configurations(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_html")
    make(pytester, {"train_mri.py": SEEDED})
    result = run(pytester, "--sweep", "lr=0.1,0.2", "--repeats", "2", "--html=r.html",
                 "--self-contained-html")
    result.assert_outcomes(passed=6)
    page = (pytester.path / "r.html").read_text()
    pivot = page[page.index('class="tp-pivot"'):]
    pivot = pivot[:pivot.index("</table>")]
    assert "<th>lr</th>" in pivot and "<th>seed</th>" not in pivot  # only what varies
    rows = pivot.split("<tr")[2:]
    assert [r.split("<td>")[1].split("<")[0].split(" ")[0] for r in rows] == [
        "mri[lr_0.1]", "mri[lr_0.2]"]
    assert "tp-best" not in rows[0] and 'class="tp-best"' in rows[1] and "★ best" in rows[1]
    # the mean and each seed's value on hover
    assert "0.7425 ± 0.0007071" in rows[1] and 'title="seed 42: 0.742, seed 43: 0.743"' in rows[1]


# -- MLflow: session, job, cell ------------------------------------------------------------------

@pytest.fixture(scope="session")
def mlflow_client_module(tmp_path_factory: pytest.TempPathFactory):
    """mlflow imported once, before any pytester snapshot of ``sys.modules`` (a second import
    in one process breaks it)."""
    mlflow = pytest.importorskip("mlflow")
    db = tmp_path_factory.mktemp("mlflow-warm") / "warm.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return mlflow


@pytest.mark.slow
def test_mlflow_runs_in_three_levels(pytester: pytest.Pytester, mlflow_client_module,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "PYTEST_ADDOPTS"):
        monkeypatch.delenv(name, raising=False)
    make(pytester, {"train_mri.py": SEEDED, "train_plain.py": PLAIN})
    result = pytester.runpytest_subprocess("-p", "training_plugin", "--sweep", "lr=0.1,0.2",
                                           "--repeats", "2", "--mlflow")
    result.assert_outcomes(passed=7)  # 4 cells, plain, 2 configurations
    db = pytester.path / "training-results" / "mlflow.db"
    client = mlflow_client_module.MlflowClient(tracking_uri=f"sqlite:///{db}")
    (experiment,) = [e for e in client.search_experiments() if e.name != "Default"]
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    by_id = {r.info.run_id: r for r in runs}
    (session,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    parent = {r.data.tags["mlflow.runName"]: by_id.get(r.data.tags.get("mlflow.parentRunId"))
              for r in runs if r is not session}
    assert parent["plain"] is session and parent["mri"] is session
    job = by_id[next(r.info.run_id for r in runs if r.data.tags["mlflow.runName"] == "mri")]
    assert job.data.tags["level"] == "job" and job.info.status == "FINISHED"
    cells = [r for r in runs if r.data.tags.get("cell")]
    assert sorted(r.data.tags["mlflow.runName"] for r in cells) == [
        "mri[lr_0.1-seed_42]", "mri[lr_0.1-seed_43]", "mri[lr_0.2-seed_42]", "mri[lr_0.2-seed_43]"]
    for cell in cells:
        assert parent[cell.data.tags["mlflow.runName"]] is job
    first = next(r for r in cells if r.data.tags["mlflow.runName"] == "mri[lr_0.2-seed_43]")
    assert (first.data.params["sweep.lr"], first.data.params["sweep.seed"]) == ("0.2", "43")


def test_skip_unchanged_works_per_cell(pytester: pytest.Pytester) -> None:
    make(pytester, {"train_mri.py": SEEDED})
    first = run(pytester, "--sweep", "seed=0:2")
    first.assert_outcomes(passed=3)
    again = run(pytester, "--sweep", "seed=0:3", "--skip-unchanged", "-p", "no:randomly")
    # seeds 0 and 1 are unchanged (skipped with their last figures), seed 2 is new
    again.assert_outcomes(passed=2, skipped=2)
    again.stdout.fnmatch_lines(["mri[[]seed_0[]]*skipped*unchanged since*",
                                "mri[[]seed_2[]]*passed*", "  mri*mean of 3/3*"])


def test_a_parameter_the_job_table_args_set_is_not_swept(pytester: pytest.Pytester) -> None:
    from training_plugin.collect.specs import MSG_NOT_SWEPT_ARGS

    make(pytester, {
        "train_mri.py": SEEDED,
        "train_odd.py": fake('p.add_argument("--seed", type=int, default=int("7"))'),
        "pyproject.toml": """
            [tool.training_plugin.jobs.mri]
            args = ["--lr", "0.5"]
        """,
    })
    listing = run(pytester, "--sweep", "lr=1,2", "--repeats", "2", "--collect-only")
    listing.stdout.fnmatch_lines([
        "job mri[[]seed_42[]]: * --seed 42 * --lr 0.5",
        f"    note: {MSG_NOT_SWEPT_ARGS.format(name='lr', option='--lr')}",
        # a default that is no literal: the seeds start at 0
        "job odd[[]seed_0[]]: * --seed 0", "job odd[[]seed_1[]]: *",
        "sweep: 4 cells of 2 jobs (mri 2, odd 2)",
    ])


@pytest.mark.parametrize("features", [(), ("-p", "no:training_plugin.features.gates")],
                         ids=["all features", "without gates"])
def test_cells_never_run_go_by_their_jobs_remembered_duration(
    pytester: pytest.Pytester, features: tuple[str, ...]
) -> None:
    make(pytester, {"train_a.py": SEEDED,
                    "train_b.py": SEEDED.replace("ns = p.parse_args()",
                                                 "ns = p.parse_args()\nimport time; time.sleep(0.5)")})
    run(pytester).assert_outcomes(passed=2)  # remembers a (fast) and b (slow)
    # the cells' order is the core's: it holds with the gates feature switched off
    listing = run(pytester, "--sweep", "seed=0:2", "--collect-only", "-p", "no:randomly",
                  *features)
    order = [line.split()[1].rstrip(":") for line in listing.stdout.lines
             if line.startswith("job ")]
    assert order == ["b[seed_0]", "b[seed_1]", "a[seed_0]", "a[seed_1]"]


def test_the_welch_rule_pure() -> None:
    from training_plugin import aggregate

    ref = [0.90, 0.91, 0.89, 0.90]
    # higher is better: a clear drop beyond the tolerance is a regression
    now = aggregate.stats_of([0.85, 0.86, 0.84, 0.85], list("0123"))
    c = aggregate.compare("auc", now, ref, "higher", 0.02)
    t, p = sps.ttest_ind([0.85, 0.86, 0.84, 0.85], ref, equal_var=False, alternative="less")
    assert (c.t, c.p) == (pytest.approx(t), pytest.approx(p)) and c.regressed and not c.noise
    # lower is better (rmse): a rise is the drop, tested with alternative="greater"
    now = aggregate.stats_of([0.30, 0.45, 0.20, 0.40], list("0123"))
    c = aggregate.compare("rmse", now, [0.25, 0.30, 0.22, 0.28], "lower", 0.02)
    _, p = sps.ttest_ind([0.30, 0.45, 0.20, 0.40], [0.25, 0.30, 0.22, 0.28], equal_var=False,
                         alternative="greater")
    assert c.p == pytest.approx(p) and p > 0.05 and c.beyond and c.noise and not c.regressed
    # one seed on a side: no test, the tolerance alone decides
    c = aggregate.compare("auc", aggregate.stats_of([0.85]), ref, "higher", 0.02)
    assert (c.tested, c.regressed) == (False, True)
    c = aggregate.compare("auc", aggregate.stats_of([0.895]), ref, "higher", 0.02)
    assert (c.beyond, c.regressed) == (False, False)


def test_the_memory_suggestion_names_each_job_once(pytester: pytest.Pytester) -> None:
    """The job table's ``memory`` is per job, so a swept job gets one suggestion, not one per
    cell."""
    from training_plugin.summary import MSG_SUGGEST_MEMORY

    make(pytester, {"train_mri.py": SEEDED, "train_plain.py": PLAIN})
    result = run(pytester, "--repeats", "3")
    result.assert_outcomes(passed=5)  # 3 cells and their configuration, and plain
    prefix = MSG_SUGGEST_MEMORY.split("{value}")[0]
    line = next(x for x in result.stdout.lines if x.startswith(prefix))
    names = [part.split(" = ")[0] for part in line[len(prefix):].split(", ")]
    assert sorted(names) == ["mri", "plain"], line
