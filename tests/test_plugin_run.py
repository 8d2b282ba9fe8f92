"""Running jobs through the plugin: commands, env, failures, results, selection, xdist."""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET

import pytest

from fakejobs import fake, write_files
from training_plugin.executors.base import MSG_EXIT_CODE, MSG_KILLED, MSG_TIMED_OUT
from training_plugin.collect.argv import MSG_NOT_FORWARDED
from training_plugin.collect.listing import MSG_NO_MATCH
from training_plugin.collect.pipeline import MSG_UNUSED_TRAIN_ARG
from training_plugin.results import SUMMARY_FILE

pytest_plugins = ["pytester"]


def make(pytester: pytest.Pytester, files: dict[str, str], ini: str = "") -> None:
    pytester.makeini("[pytest]\ntestpaths = tests\n" + textwrap.dedent(ini))
    write_files(pytester.path, files)


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "training_plugin", *args)


def received(pytester: pytest.Pytester, job: str, out: str = "training-results") -> dict:
    return json.loads((pytester.path / out / job / "received.json").read_text())


def test_shared_flags_reach_each_script_in_its_own_spelling(pytester: pytest.Pytester) -> None:
    make(
        pytester,
        {
            "jobs/train_dash.py": fake("""
                p.add_argument("-e", "--epochs", type=int)
                p.add_argument("--output-dir")
                p.add_argument("--seed", type=int)
                p.add_argument("--learning-rate", type=float)
            """),
            "jobs/train_under.py": fake("""
                p.add_argument("--epochs", type=int)
                p.add_argument("--folds", type=int)
                p.add_argument("--output_dir")
                p.add_argument("--learning_rate", type=float)
            """),
            "jobs/train_bare.py": fake(),
        },
    )
    result = run(pytester, "--epochs", "7", "--folds", "3", "--seed", "5", "--output-dir",
                 "out", "--train-arg", "learning_rate=0.5")
    result.assert_outcomes(passed=3)
    out = pytester.path / "out"
    assert received(pytester, "dash", "out")["argv"] == [
        "--epochs", "7", "--seed", "5", "--learning-rate", "0.5", "--output-dir", str(out / "dash")
    ]
    assert received(pytester, "under", "out")["argv"] == [
        "--epochs", "7", "--folds", "3", "--learning_rate", "0.5", "--output_dir", str(out / "under")
    ]
    bare = received(pytester, "bare", "out")
    assert bare["argv"] == []
    assert bare["env"]["TRAINING_OUTPUT_DIR"] == str(out / "bare")
    assert bare["env"]["TRAINING_JOB_ID"] == "bare"
    assert bare["cwd"] == str(pytester.path)
    assert (out / "bare" / "train.log").read_text().strip() == "training bare"


def test_configured_args_win_and_table_env_is_applied(pytester: pytest.Pytester) -> None:
    make(
        pytester,
        {
            "train_one.py": fake('p.add_argument("--epochs", type=int)\np.add_argument("--tag")'),
            "pyproject.toml": textwrap.dedent("""
                [tool.training_plugin.jobs.one]
                args = ["--epochs=2", "--tag", "x y"]
                env = {MY_VAR = "from-table", TRAINING_JOB_ID = "overridden"}
            """),
        },
    )
    run(pytester, "--epochs", "9").assert_outcomes(passed=1)
    got = received(pytester, "one")
    assert got["argv"] == ["--epochs=2", "--tag", "x y"]  # --epochs 9 not passed twice
    assert got["env"]["MY_VAR"] == "from-table"
    assert got["env"]["TRAINING_JOB_ID"] == "overridden"  # the table wins


def test_collect_only_shows_exact_commands_and_writes_nothing(pytester: pytest.Pytester) -> None:
    make(
        pytester,
        {
            "train_one.py": fake('p.add_argument("-e", "--epochs")\np.add_argument("--output_dir")'),
            "train_weird.py": fake('name = "--x"\np.add_argument(name)'),
            "train_broken.py": "def broken(:\n",
        },
    )
    result = run(pytester, "--collect-only", "--epochs", "3", "-p", "no:cacheprovider")
    out = str(pytester.path / "training-results" / "one")
    result.stdout.fnmatch_lines(
        [
            "job broken: * train_broken.py",
            "    flags: command line cannot be read statically (syntax error, line 1*",
            f"job one: * train_one.py --epochs 3 --output_dir {out}",
            "    flags: -e/--epochs, --output_dir",
            "job weird: * train_weird.py",
            "    flags: command line cannot be read statically (add_argument with computed option*",
            "    note: " + MSG_NOT_FORWARDED,
        ]
    )
    assert result.ret == 0
    assert not (pytester.path / "training-results").exists()
    quiet = run(pytester, "--collect-only", "-q")
    quiet.stdout.fnmatch_lines(
        ["train_broken.py::broken", "train_one.py::one", "train_weird.py::weird"]
    )
    assert "flags:" not in quiet.stdout.str()
    assert not (pytester.path / "training-results").exists()


def test_missing_required_flag_fails_without_starting(pytester: pytest.Pytester) -> None:
    make(
        pytester,
        {
            "train_needy.py": fake('p.add_argument("--config", required=True)'),
            "train_fine.py": fake(),
        },
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*job 'needy' was not started: train_needy.py requires --config*"
         "add \"--config\", \"...\" to `args` in [[]tool.training_plugin.jobs.needy]*"]
    )
    assert not (pytester.path / "training-results/needy/received.json").exists()


@pytest.mark.parametrize(
    ("post", "story", "outcomes"),
    [
        ("print('loss exploded'); sys.exit(3)",
         f"*training job 'bad' failed: {MSG_EXIT_CODE.format(code=3)} after *",
         {"failed": 1}),
        # a SIGKILL the plugin did not send is an infrastructure failure: a pytest error
        ("import signal; print('loss exploded', flush=True); os.kill(os.getpid(), signal.SIGKILL)",
         f"*training job 'bad'*infrastructure: {MSG_KILLED.format(signal='SIGKILL')}*",
         {"errors": 1}),
    ],
    ids=["exit-code", "signal"],
)
def test_a_failing_job_tells_its_story_and_others_still_pass(
    pytester: pytest.Pytester, post: str, story: str, outcomes: dict[str, int]
) -> None:
    make(pytester, {"train_bad.py": fake(post=post), "train_good.py": fake()})
    result = run(pytester)
    result.assert_outcomes(passed=1, **outcomes)
    result.stdout.fnmatch_lines(
        [story, "command: * train_bad.py", "log: *training-results/bad/train.log",
         "last 30 lines of the log:", "    training bad", "    loss exploded"]
    )


def test_syntax_error_fails_its_own_job_only(pytester: pytest.Pytester) -> None:
    make(pytester, {"train_broken.py": "def broken(:\n    pass\n", "train_good.py": fake()})
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([f"*training job 'broken' failed: {MSG_EXIT_CODE.format(code=1)}*",
                                 "*SyntaxError*"])


def test_timeout_from_job_table(pytester: pytest.Pytester) -> None:
    make(
        pytester,
        {
            "train_slow.py": fake(pre="import time; time.sleep(30)"),
            "pyproject.toml": "[tool.training_plugin.jobs.slow]\ntimeout = 0.5\n",
        },
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [f"*training job 'slow' failed: {MSG_TIMED_OUT.format(timeout=0.5)}*"])


def test_summary_table_summary_json_and_junit_properties(pytester: pytest.Pytester) -> None:
    make(
        pytester,
        {
            "train_real.py": fake(auc=0.9125),
            "train_synth.py": fake(auc=0.6, synthetic=True),
            "train_bad.py": fake(post="sys.exit(2)"),
            "train_odd.py": fake(post="open(os.path.join(out, 'metrics.json'), 'w').write('{oops')"),
        },
    )
    result = run(pytester, "--junitxml=report.xml")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*= training summary =*",
            "job * outcome * duration * primary metric",
            "bad * failed * s  -",
            "odd * passed * s  - * metrics.json malformed",
            "real * passed * s  roc_auc=0.9125",
            "synth * passed * s  roc_auc=0.6000 * SYNTHETIC data",
            "summary: *training-results/summary.json",
        ]
    )
    result.stdout.fnmatch_lines(["*training job 'odd': *metrics.json is not valid JSON*"])
    summary = json.loads((pytester.path / f"training-results/{SUMMARY_FILE}").read_text())
    by_id = {job["id"]: job for job in summary["jobs"]}
    assert set(by_id) == {"bad", "odd", "real", "synth"}
    assert by_id["real"]["outcome"] == "passed" and by_id["bad"]["outcome"] == "failed"
    assert by_id["real"]["metrics"] == {"roc_auc": 0.9125, "accuracy": 0.75}
    assert by_id["real"]["primary_metric"] == {"name": "roc_auc", "value": 0.9125}
    assert by_id["synth"]["synthetic"] is True and by_id["real"]["synthetic"] is False
    assert by_id["real"]["nodeid"] == "train_real.py::real"
    assert by_id["real"]["command"].endswith("train_real.py")
    assert by_id["real"]["log"].endswith("training-results/real/train.log")
    assert by_id["real"]["duration_s"] > 0
    assert "not valid JSON" in by_id["odd"]["metrics_error"]
    props = {
        case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
        for case in ET.parse(pytester.path / "report.xml").iter("testcase")
    }
    assert props["real"]["roc_auc"] == "0.9125"
    assert props["real"]["primary_metric"] == "roc_auc"
    assert props["synth"]["data.synthetic"] == "true"


def test_an_earlier_runs_metrics_are_never_reported_as_this_runs(
    pytester: pytest.Pytester,
) -> None:
    make(pytester, {"train_quiet.py": fake(metrics=False)})  # no metrics.json
    old = pytester.path / "training-results/quiet"
    old.mkdir(parents=True)
    (old / "metrics.json").write_text(json.dumps(
        {"primary_metric": "roc_auc", "metrics": {"roc_auc": 0.99}}))
    result = run(pytester, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["quiet * passed * s  - * no metrics.json"])
    assert "0.99" not in result.stdout.str()
    summary = json.loads((pytester.path / f"training-results/{SUMMARY_FILE}").read_text())
    assert "metrics" not in summary["jobs"][0] or not summary["jobs"][0]["metrics"]
    assert not (old / "metrics.json").exists()
    assert json.loads((old / "metrics.previous.json").read_text())["metrics"] == {"roc_auc": 0.99}


def test_k_matching_nothing_exits_5_and_lists_ids(pytester: pytest.Pytester) -> None:
    make(pytester, {"train_als.py": fake(), "train_mri.py": fake()})
    result = run(pytester, "-k", "alzheimers")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result.stdout.fnmatch_lines([MSG_NO_MATCH.format(what="-k 'alzheimers'", ids="als, mri")])
    assert not (pytester.path / "training-results").exists()
    run(pytester, "-k", "als").assert_outcomes(passed=1, deselected=1)


def test_last_failed_reruns_only_the_failed_job(pytester: pytest.Pytester) -> None:
    make(pytester, {"train_bad.py": fake(post="sys.exit(1)"), "train_good.py": fake()})
    run(pytester).assert_outcomes(passed=1, failed=1)
    (pytester.path / "training-results/good/received.json").unlink()
    rerun = run(pytester, "--lf")
    rerun.assert_outcomes(failed=1)
    assert not (pytester.path / "training-results/good/received.json").exists()


def test_xdist_runs_jobs_in_parallel_with_summary_and_properties(
    pytester: pytest.Pytester,
) -> None:
    make(
        pytester,
        {
            "a/train_one.py": fake('p.add_argument("--n-jobs", type=int)', auc=0.5),
            "b/train_two.py": fake(auc=0.25, synthetic=True),
            "b/train_three.py": fake(post="sys.exit(4)"),
        },
    )
    result = pytester.runpytest_subprocess(
        "-p", "training_plugin", "-n", "2", "--junitxml=report.xml"
    )
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [f"*training job 'three' failed: {MSG_EXIT_CODE.format(code=4)}*",
         "*= training summary =*",
         "job * outcome * duration * primary metric * node",
         "one * passed * roc_auc=0.5000 * local:gw*",
         "two * passed * roc_auc=0.2500 * local:gw* SYNTHETIC data"]
    )
    one = received(pytester, "one")
    assert one["argv"][:1] == ["--n-jobs"]  # the thread budget, in the script's spelling
    assert one["env"]["OMP_NUM_THREADS"] == one["argv"][1]
    summary = json.loads((pytester.path / f"training-results/{SUMMARY_FILE}").read_text())
    assert sorted(job["id"] for job in summary["jobs"]) == ["one", "three", "two"]
    props = {
        case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
        for case in ET.parse(pytester.path / "report.xml").iter("testcase")
    }
    assert props["two"]["roc_auc"] == "0.25" and props["two"]["data.synthetic"] == "true"


def test_train_arg_that_no_job_accepts_is_warned_about(pytester: pytest.Pytester) -> None:
    make(pytester, {"train_one.py": fake('p.add_argument("--lr", type=float)')})
    result = run(pytester, "--train-arg", "learnin-rate=0.1", "--train-arg", "lr=0.5")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["*" + MSG_UNUSED_TRAIN_ARG.format(name="learnin-rate", value="0.1") + "*"])
    assert received(pytester, "one")["argv"] == ["--lr", "0.5"]


def test_flag_analysis_is_cached_and_follows_helper_edits(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unchanged script is not parsed again (its analysis comes from the cache); an edit of
    a helper it follows is seen."""
    from training_plugin.flags import Analyzer

    analyzed: list[str] = []
    analyze = Analyzer.analyze

    def counted(self: Analyzer, script):  # type: ignore[no-untyped-def]
        analyzed.append(str(script))
        return analyze(self, script)

    monkeypatch.setattr(Analyzer, "analyze", counted)
    make(
        pytester,
        {
            "helpers.py": "def add(p):\n    p.add_argument('--epochs')\n",
            "train_one.py": fake("from helpers import add\nadd(p)"),
        },
    )
    script = str(pytester.path / "train_one.py")
    first = run(pytester, "--collect-only", "--epochs", "4")
    first.stdout.fnmatch_lines(["job one: * train_one.py --epochs 4"])
    assert analyzed == [script]
    cache = pytester.path / ".pytest_cache/d/training_plugin/flags.json"
    assert script in json.loads(cache.read_text())
    again = run(pytester, "--collect-only", "--epochs", "4")
    again.stdout.fnmatch_lines(["job one: * train_one.py --epochs 4"])
    assert analyzed == [script]  # unchanged: from the cache, not parsed again
    (pytester.path / "helpers.py").write_text("def add(p):\n    p.add_argument('--epochs-x')\n")
    second = run(pytester, "--collect-only", "--epochs", "4")
    second.stdout.fnmatch_lines(["job one: * train_one.py", "    flags: --epochs-x"])
    assert "--epochs 4" not in second.stdout.str()
    assert analyzed == [script, script]  # the helper changed: analyzed again


def test_table_timeout_without_pytest_timeout_still_applies(pytester: pytest.Pytester) -> None:
    make(
        pytester,
        {
            "train_slow.py": fake(pre="import time; time.sleep(30)"),
            "pyproject.toml": "[tool.training_plugin.jobs.slow]\ntimeout = 0.5\n",
        },
    )
    result = run(pytester, "-p", "no:timeout", "--strict-markers")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [f"*training job 'slow' failed: {MSG_TIMED_OUT.format(timeout=0.5)}*"])
