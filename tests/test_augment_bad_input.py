"""A bad `dataset.augment` entry stops the run before training with one line naming
`dataset.augment[i].key`, exit code 2: names and values before any data is read, what depends on the
data (crop sizes, channels, flat features) once it is read."""

import pytest

from clexp.config.errors import ConfigError
from clexp.data.augment import Augment, parse

QUICK = ["logger=none", "trainer.enable_progress_bar=false", "hydra.run.dir=run", "trainer.accelerator=cpu"]

# the default dataset (digits) has 1×8×8 images
CLI_CASES = [
    ("dataset.augment=[{name:blur}]", "dataset.augment[0].name"),
    ("dataset.augment=[{name:random_crop,padding:-1}]", "dataset.augment[0].padding"),
    ("dataset.augment=[hflip,{name:hflip,p:1.5}]", "dataset.augment[1].p"),
    ("dataset.augment=[{name:random_crop,paddin:4}]", "dataset.augment[0].paddin"),
    ("dataset.augment=[{name:random_crop,size:12,padding:1}]", "dataset.augment[0].size"),  # > the padded 10×10
    ("dataset.augment=[{name:color_jitter,saturation:0.4}]", "dataset.augment[0].saturation"),  # 1 channel
]


@pytest.mark.parametrize("override,key", CLI_CASES, ids=[c[1] for c in CLI_CASES])
def test_bad_entry_stops_before_training_with_its_key(tmp_path, clexp_main, override, key):
    out = clexp_main([*QUICK, override], tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("clexp: error:")]
    assert len(lines) == 1 and f"{key}=" in lines[0], out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


PARSE_CASES = [
    ("hflip", "dataset.augment"),  # not a list
    ([{"p": 0.5}], "dataset.augment[0]"),  # no name
    ([{"name": "color_jitter", "hue": 0.7}], "dataset.augment[0].hue"),
    ([{"name": "color_jitter", "brightness": -0.1}], "dataset.augment[0].brightness"),
    ([{"name": "color_jitter", "p": -1}], "dataset.augment[0].p"),
    ([{"name": "random_resized_crop", "scale": [0.5, 0.2]}], "dataset.augment[0].scale"),
    ([{"name": "random_resized_crop", "scale": [0.5, 1.5]}], "dataset.augment[0].scale"),
    ([{"name": "random_resized_crop", "ratio": [0, 1]}], "dataset.augment[0].ratio"),
    ([{"name": "random_crop", "padding_mode": "wrap"}], "dataset.augment[0].padding_mode"),
    ([{"name": "random_crop", "fill": "white"}], "dataset.augment[0].fill"),
    ([{"name": "random_crop", "size": 0}], "dataset.augment[0].size"),
    ([{"name": "random_crop", "padding": 1.5}], "dataset.augment[0].padding"),
    ([{"name": "hflip", "p": True}], "dataset.augment[0].p"),
]


@pytest.mark.parametrize("entries,key", PARSE_CASES, ids=[c[1] + f"-{i}" for i, c in enumerate(PARSE_CASES)])
def test_bad_value_is_named(entries, key):
    with pytest.raises(ConfigError) as err:
        parse(entries)
    assert err.value.key == key and str(err.value).startswith(f"{key}=")


SHAPE_CASES = [
    ([{"name": "random_crop", "size": 6, "padding": 0}], (1, 8, 8), "dataset.augment[0].size"),  # < the input
    ([{"name": "random_resized_crop", "size": [8, 16]}], (3, 8, 8), "dataset.augment[0].size"),
    ([{"name": "random_crop", "padding": 8, "padding_mode": "reflect"}], (3, 8, 8), "dataset.augment[0].padding"),
    (["hflip"], (64,), "dataset.augment[0].name"),  # flat features
    (["hflip", {"name": "color_jitter", "hue": 0.1}], (1, 8, 8), "dataset.augment[1].hue"),
]


@pytest.mark.parametrize("entries,shape,key", SHAPE_CASES, ids=[c[2] + f"-{i}" for i, c in enumerate(SHAPE_CASES)])
def test_entry_that_does_not_fit_the_data_is_named(entries, shape, key):
    with pytest.raises(ConfigError) as err:
        Augment(parse(entries), shape)
    assert err.value.key == key


def test_good_entries_pass():
    specs = parse([{"name": "random_crop", "size": 32, "padding": 4}, "hflip",
                   {"name": "color_jitter", "brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1,
                    "p": 0.8},
                   {"name": "random_resized_crop", "scale": [0.08, 1], "ratio": [0.75, 1.3333]}])
    assert [s.name for s in specs] == ["random_crop", "hflip", "color_jitter", "random_resized_crop"]
    assert bool(Augment(specs, (3, 32, 32)))
    assert parse(None) == [] and parse([]) == []
