"""`clexp-reproduce` (issue 22): the presets' faithful mode and published numbers, the table writer on a
constructed sweep folder, bad input, and a tiny whole run on Split Digits (resumed on a second call)."""

import json
import statistics
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from clexp import reproduce
from clexp.config.errors import ConfigError
from clexp.config.presets import apply_preset
from tests.conftest import compose

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml")
                 if (OmegaConf.load(p).get("preset") or {}).get("reproduce"))


def test_the_five_published_presets_have_a_table():
    assert set(PRESETS) >= {"hsu2018_split_mnist", "vandeven2019_split_mnist", "vandeven2019_permuted_mnist",
                            "zenke2017_permuted_mnist", "split_cifar100"}


@pytest.mark.parametrize("name", PRESETS)
def test_published_numbers_and_estimators_are_well_formed(name):
    preset = reproduce.load_preset(name)
    table = preset["reproduce"]
    for method, scenarios in preset["paper"].items():
        assert method in table["methods"]
        for scenario, cell in scenarios.items():
            assert scenario in table["scenarios"]
            assert 0 < cell["mean"] <= 100 and cell.get("std", 0) >= 0
    assert preset["paper_spread"] in ("std", "sem")
    for method, est in (preset.get("estimators") or {}).items():
        assert method in table["methods"] and est.get("note")
        for scenario in table["scenarios"][:1]:  # every key the estimator sets exists in the method's config
            overrides = [f"experiment={name}", f"method={method}", f"scenario.incremental={scenario}",
                         "preset.faithful=true"]
            cfg = compose(overrides)
            before = OmegaConf.to_container(cfg.method, resolve=False)
            applied = apply_preset(cfg, overrides)
            for item in applied:
                key = item.split("=", 1)[0].removeprefix("method.")
                assert OmegaConf.select(OmegaConf.create(before), key, default="<missing>") != "<missing>", key


@pytest.mark.parametrize("name,method,scenario,expected", [
    # Hsu et al.: Fisher of the argmax label at batch size 1, penalty without ½: λ = 2·reg_coef
    ("hsu2018_split_mnist", "ewc", "class", {"lam": 1200, "fisher.variant": "predicted"}),
    ("hsu2018_split_mnist", "online_ewc", "domain", {"lam": 1400, "gamma": 1.0, "fisher.variant": "predicted"}),
    ("hsu2018_split_mnist", "mas", "domain", {"lam": 10000, "variant": "batch_mean", "output_mean": True}),
    ("hsu2018_split_mnist", "l2", "task", {"lam": 0.02}),
    ("hsu2018_split_mnist", "si", "class", {"c": 600}),
    # van de Ven & Tolias: the stored F̃ is multiplied by γ in the loss once more: λ = γ·λ_paper
    ("vandeven2019_split_mnist", "online_ewc", "domain", {"lam": 0.7e8, "gamma": 0.7, "fisher.variant": "predicted"}),
    ("vandeven2019_permuted_mnist", "online_ewc", "task", {"lam": 400, "fisher.variant": "predicted"}),
    ("vandeven2019_permuted_mnist", "ewc", "class", {"lam": 1, "fisher.variant": "predicted"}),
])
def test_faithful_mode_sets_the_papers_estimator_and_scaled_strength(name, method, scenario, expected):
    base = [f"experiment={name}", f"method={method}", f"scenario.incremental={scenario}"]
    correct = compose(base)
    apply_preset(correct, base)
    faithful = compose([*base, "preset.faithful=true"])
    apply_preset(faithful, [*base, "preset.faithful=true"])
    for key, value in expected.items():
        assert OmegaConf.select(faithful.method, key) == pytest.approx(value) if not isinstance(value, str) \
            else OmegaConf.select(faithful.method, key) == value
    if method in ("ewc", "online_ewc"):  # the default stays clexp's own estimator
        assert correct.method.fisher.variant == "exact"


def test_faithful_leaves_the_command_lines_strength_alone():
    overrides = ["experiment=hsu2018_split_mnist", "method=ewc", "preset.faithful=true", "method.lam=3"]
    cfg = compose(overrides)
    apply_preset(cfg, overrides)
    assert cfg.method.lam == 3 and cfg.method.fisher.variant == "predicted"


def test_preset_faithful_must_be_a_boolean():
    overrides = ["experiment=hsu2018_split_mnist", "method=ewc", "preset.faithful=maybe"]
    with pytest.raises(ConfigError, match="preset.faithful"):
        apply_preset(compose(overrides), overrides)


# ------------------------------------------------------------------------------ the table writer


def _fake_job(folder: Path, method: str, scenario: str, faithful: bool, seed: int, acc: float | None):
    folder.mkdir(parents=True)
    cfg = {"seed": seed, "method": {"name": method}, "scenario": {"name": "split", "incremental": scenario},
           "dataset": {"name": "mnist"}, "preset": {"faithful": faithful}}
    if acc is None:
        data = {"status": "failed", "error": "RuntimeError: boom", "config": cfg}
    else:
        data = {"status": "completed", "config": cfg, "seed": seed, "acc_matrix": [[acc]],
                "metrics": {"avg_acc": acc, "forgetting": 0.0, "bwt": 0.0}}
    (folder / "results.json").write_text(json.dumps(data))


def test_table_writer_on_a_constructed_sweep_folder(tmp_path):
    sweep = tmp_path / "sweep"
    accs = {("ewc", "task", True): [0.91, 0.95], ("ewc", "task", False): [0.97, 0.96],
            ("naive", "task", True): [0.90, 0.86],
            ("ewc", "class", True): [0.2, 0.21], ("ewc", "class", False): [0.19]}
    for (method, scenario, faithful), values in accs.items():
        for seed, acc in enumerate(values):
            _fake_job(sweep / f"{method}_{scenario}_{faithful}_{seed}", method, scenario, faithful, seed, acc)
    _fake_job(sweep / "ewc_class_False_9", "ewc", "class", False, 9, None)  # a failed job
    preset = {"reproduce": {"methods": ["naive", "ewc"], "scenarios": ["task", "class"]},
              "estimators": {"ewc": {"set": {"fisher": {"variant": "predicted"}}, "note": "n"}},
              "paper": {"ewc": {"task": {"mean": 97.7, "std": 0.81}}}, "paper_spread": "std", "paper_source": "P"}
    rows = reproduce.collect_table(sweep, preset)
    assert [(r["scenario"], r["method"]) for r in rows] == [("task", "naive"), ("task", "ewc"),
                                                            ("class", "naive"), ("class", "ewc")]
    by = {(r["method"], r["scenario"]): r for r in rows}
    for (method, scenario, faithful), values in accs.items():
        # naive has no estimator of its own: its runs (of either mode) fill both columns
        modes = ["faithful" if faithful else "correct"] if method == "ewc" else ["faithful", "correct"]
        pct = [100 * v for v in values]
        for mode in modes:
            r = by[(method, scenario)]
            assert r[f"{mode}_mean"] == pytest.approx(statistics.fmean(pct))
            assert r[f"{mode}_n"] == len(values)
            if len(values) > 1:
                assert r[f"{mode}_std"] == pytest.approx(statistics.stdev(pct))
            else:
                assert r[f"{mode}_std"] is None
    assert by[("naive", "task")]["same_in_both"] and not by[("ewc", "task")]["same_in_both"]
    assert by[("naive", "class")]["faithful_n"] == 0
    assert by[("ewc", "task")]["paper_mean"] == 97.7 and by[("naive", "task")]["paper_mean"] is None
    assert by[("ewc", "class")]["failed"] == 1 and by[("ewc", "task")]["failed"] == 0
    heading = reproduce.title("x", preset, "mnist_t10k")
    assert "10k-image stand-in" in heading and "mean ± std" in heading
    files = reproduce.write_table(rows, tmp_path / "out", heading)
    md = files["table.md"].read_text()
    assert md.startswith(heading)
    assert "| scenario | method | paper | clexp (faithful) | clexp (correct) |" in md
    assert f"{statistics.fmean([91, 95]):.2f} ± {statistics.stdev([91, 95]):.2f} (n=2)" in md
    assert "97.70 ± 0.81" in md and "[1 failed]" in md and "| task | naive* |" in md
    assert files["reproduce.png"].stat().st_size > 1000
    assert files["table.csv"].read_text().splitlines()[0].startswith("scenario,method,paper_mean")


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("argv,needle", [
    (["nope"], "unknown preset 'nope'"),
    (["smoke"], "no table to reproduce"),
    (["hsu2018_split_mnist", "--seeds", "0,x"], "--seeds"),
    (["hsu2018_split_mnist", "--seeds", "1,1"], "--seeds"),
    (["hsu2018_split_mnist", "--seeds", "-1"], "--seeds"),
    (["hsu2018_split_mnist", "--methods", "ewc,lwf"], "--methods"),
    (["hsu2018_split_mnist", "--scenarios", "tasks"], "--scenarios"),
    (["hsu2018_split_mnist", "--data", "mnist_t10k=/no/such/folder"], "is not a folder"),
    (["hsu2018_split_mnist", "--data", "cifar=/tmp"], "--data"),
    (["hsu2018_split_mnist", "--launcher", "warp"], "--launcher"),
])
def test_bad_input_is_one_line_and_exit_2(argv, needle, capsys, tmp_path):
    assert reproduce.main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("clexp-reproduce: error:") and needle in err[0]
    assert not (tmp_path / "sweep").exists()


def test_data_folder_without_the_files_is_refused(tmp_path, capsys):
    assert reproduce.main(["hsu2018_split_mnist", "--data", f"mnist_t10k={tmp_path}", "--out", str(tmp_path)]) == 2
    assert "lacks t10k-images-idx3-ubyte[.gz]" in capsys.readouterr().err


def test_the_sweep_command_line_is_one_multirun():
    args = reproduce.sweep_arguments("hsu2018_split_mnist", {}, ["naive", "ewc"], ["task"], ["faithful", "correct"],
                                     [0, 1], Path("/s"), ("mnist_t10k", Path("/d")), "parallel", ["train.epochs=1"])
    assert args[0] == "-m" and "method=naive,ewc" in args and "preset.faithful=true,false" in args
    assert "seed=0,1" in args and "hydra/launcher=parallel" in args and "hydra.sweep.dir=/s" in args
    assert "dataset=mnist_t10k" in args and "dataset.path=/d" in args and args[-1] == "train.epochs=1"


# ------------------------------------------------------------------------------ a whole tiny run


@pytest.mark.slow  # four short jobs in a subprocess, twice: 18 s on two quiet cores, minutes when they are busy
def test_tiny_reproduce_on_split_digits_and_its_resume(tmp_path, capsys):
    argv = ["hsu2018_split_mnist", "--methods", "naive,ewc", "--seeds", "0", "--scenarios", "class",
            "--out", str(tmp_path), "dataset=digits", "train.epochs=null", "train.iterations=3", "plots=false"]
    assert reproduce.main(argv) == 0
    out = capsys.readouterr().out
    assert "4 jobs (2 methods × 1 scenarios × 2 modes × 1 seeds)" in out
    rows = {r["method"]: r for r in reproduce.collect_table(tmp_path / "sweep", reproduce.load_preset(
        "hsu2018_split_mnist"), ["naive", "ewc"], ["class"])}
    for mode in ("faithful", "correct"):
        assert rows["naive"][f"{mode}_n"] == rows["ewc"][f"{mode}_n"] == 1
    # naive has no paper-specific estimator: its two modes are the same run, to the bit
    assert rows["naive"]["faithful_mean"] == rows["naive"]["correct_mean"]
    ewc = json.loads((tmp_path / "sweep" / "ewc_class_faithful-True_seed0" / "results.json").read_text())
    assert ewc["config"]["method"]["fisher"]["variant"] == "predicted" and ewc["config"]["method"]["lam"] == 1200
    assert "19.71 ± 0.08" in (tmp_path / "table.md").read_text()
    # re-running skips every finished job (clexp's sweep resume)
    assert reproduce.main(argv) == 0
    assert (tmp_path / "sweep.log").read_text().count("Skipped:") == 4


def test_mnist_t10k_dataset_is_the_benchmarks_stand_in(mnist_dir):
    import torch

    from bench.common import mnist_like
    from clexp.data.arrays import load_mnist_t10k

    ours, bench = load_mnist_t10k(mnist_dir), mnist_like()
    assert (len(ours.y_train), len(ours.y_test)) == (8000, 2000) and ours.name == "mnist-t10k"
    for key in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(ours, key), getattr(bench, key))


def test_mnist_t10k_dataset_refuses_a_folder_without_the_files(tmp_path):
    from clexp.data.arrays import load_mnist_t10k
    from clexp.data.base import DataError

    with pytest.raises(DataError, match="no t10k-images-idx3-ubyte"):
        load_mnist_t10k(tmp_path)
    with pytest.raises(DataError, match="is not a folder"):
        load_mnist_t10k(tmp_path / "nope")


# ------------------------------------------------------------------------------ the paper's steps on a stand-in


def test_a_stand_in_keeps_the_papers_optimizer_steps():
    preset = reproduce.load_preset("hsu2018_split_mnist")
    # 4 epochs of 60,000 MNIST images = 30 epochs of the stand-in's 8,000 (batch 128 in both)
    assert reproduce.stand_in_epochs("hsu2018_split_mnist", preset, "mnist_t10k", [], keep=False) == 30
    assert reproduce.stand_in_epochs("hsu2018_split_mnist", preset, None, [], keep=False) is None  # full MNIST
    assert reproduce.stand_in_epochs("hsu2018_split_mnist", preset, "mnist_t10k", [], keep=True) is None
    for given in ("train.epochs=2", "train.iterations=5"):  # the command line's own count is never changed
        assert reproduce.stand_in_epochs("hsu2018_split_mnist", preset, "mnist_t10k", [given], keep=False) is None
    # a preset counted in optimizer steps already takes the paper's steps on any data
    vdv = reproduce.load_preset("vandeven2019_split_mnist")
    assert reproduce.stand_in_epochs("vandeven2019_split_mnist", vdv, "mnist_t10k", [], keep=False) is None
    heading = reproduce.title("hsu2018_split_mnist", preset, "mnist_t10k", 30, ["seed=3"])
    assert "train.epochs=30: the paper's optimizer steps" in heading and "overrides: seed=3" in heading


def test_the_stand_in_epochs_reach_the_sweep(tmp_path, monkeypatch):
    data = tmp_path / "t10k"  # the files need only be there: the sweep itself is not run
    data.mkdir()
    for stem in reproduce.DATA["mnist_t10k"]["files"]:
        (data / f"{stem}.gz").touch()
    seen = {}
    monkeypatch.setattr(reproduce, "run_sweep", lambda args, log: seen.setdefault("args", args) and 0)
    argv = ["hsu2018_split_mnist", "--seeds", "0", "--methods", "naive", "--scenarios", "class",
            "--data", f"mnist_t10k={data}", "--out", str(tmp_path / "out")]
    reproduce.main(argv)
    assert "train.epochs=30" in seen.pop("args")
    reproduce.main([*argv, "--keep-epochs"])
    assert not any(a.startswith("train.epochs=") for a in seen.pop("args"))
