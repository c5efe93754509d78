"""cnncalc used as a library, the way a notebook sweep calls it: argument types a user passes naturally
(Path, numpy integers, profile names), and errors that are CnnCalcErrors rather than crashes inside."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cnncalc
from cnncalc.errors import CnnCalcError, SpecFileError
from cnncalc.train import load_data

SPECS = Path(__file__).resolve().parent.parent / "specs"
SMALL = "6x6x2|3x3x2x4(p=1)|BN|ReLU|MP|FC(3)"


def test_load_takes_a_path_object_like_its_text():
    by_path = cnncalc.load(SPECS / "lenet5.yaml")
    by_text = cnncalc.load(str(SPECS / "lenet5.yaml"))
    assert [g.nodes for g in by_path.networks] == [g.nodes for g in by_text.networks]
    assert by_path.path == str(SPECS / "lenet5.yaml")


def test_load_of_a_missing_path_object_is_no_such_file(tmp_path):
    with pytest.raises(SpecFileError, match="no such file"):
        cnncalc.load(tmp_path / "net.yaml")


def test_load_of_something_that_is_neither_text_nor_path_is_a_clear_error():
    with pytest.raises(SpecFileError, match="give a file name"):
        cnncalc.load(None)  # type: ignore[arg-type]


def test_load_data_takes_a_path_object(tmp_path):
    # 5 samples of 6x6x2 (NHWC), 3 classes; val_fraction 0.2 of 5 holds out 1 sample
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.standard_normal((5, 6, 6, 2)).astype(np.float32), y=np.arange(5) % 3)
    data = load_data(tmp_path / "d.npz", cnncalc.parse(SMALL), val_fraction=0.2)
    assert data.x_train.shape[1:] == (2, 6, 6)
    assert len(data.x_train) + len(data.x_val) == 5


def test_analyze_takes_profile_names_as_well_as_profiles():
    from cnncalc.hardware import get_profiles

    graph = cnncalc.parse(SMALL)
    by_object = cnncalc.analyze(graph, profiles=get_profiles(["jetson-nano", "a100"]))
    by_name = cnncalc.analyze(graph, profiles=["jetson-nano", "a100"])
    one_name = cnncalc.analyze(graph, profiles="jetson-nano")
    assert list(by_name.costs) == ["jetson-nano", "a100"]
    assert by_name.costs == by_object.costs
    assert one_name.costs == {"jetson-nano": by_object.costs["jetson-nano"]}


def test_analyze_with_an_unknown_profile_name_suggests_the_close_one():
    with pytest.raises(CnnCalcError, match="unknown hardware profile 'jetson'") as caught:
        cnncalc.analyze(cnncalc.parse(SMALL), profiles=["jetson"])
    assert "jetson-nano" in str(caught.value)


def test_analyze_refuses_a_profile_of_another_type_clearly():
    with pytest.raises(CnnCalcError, match="a hardware profile is a name or a Profile, not int"):
        cnncalc.analyze(cnncalc.parse(SMALL), profiles=[3])  # type: ignore[list-item]


def test_get_profiles_takes_one_name_alone():
    from cnncalc.hardware import get_profiles

    assert [p.name for p in get_profiles("jetson-nano")] == ["jetson-nano"]
