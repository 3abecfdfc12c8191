"""Tests of ablate.scale.slurm_spec: the ``slurm:`` keys of experiment and search files."""

from __future__ import annotations

import pytest
import yaml

from ablate.experiment import ExperimentError, load_experiment
from ablate.scale.search_spec import SearchError, load_search
from ablate.scale.slurm_spec import KEY_DOCS, SlurmSpec, parse_slurm


def test_the_keys_of_an_experiment_file_reach_its_spec_and_options_win(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump({"slurm": {"partition": "gpu", "time": 30, "mem": 4000,
                                              "setup": ["module load cuda"]}}))
    spec = load_experiment(path).slurm
    assert spec == SlurmSpec(partition="gpu", time=30, mem="4000", setup=("module load cuda",))
    assert spec.replace(time=90, array=None) == SlurmSpec(partition="gpu", time=90, mem="4000",
                                                          setup=("module load cuda",))
    assert load_experiment(tmp_path / "e.yaml").slurm.array == 2  # the default


def test_a_search_file_takes_the_same_keys(tiny, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(tiny(slurm={"array": 8, "gpus": 1})))
    assert load_search(path).slurm == SlurmSpec(array=8, gpus=1)
    path.write_text(yaml.safe_dump(tiny(slurm={"nodes": 2})))
    with pytest.raises(SearchError, match=f"{path}: slurm: unknown key 'nodes'; allowed: "
                                          f"{', '.join(KEY_DOCS)}"):
        load_search(path)


@pytest.mark.parametrize("slurm, message", [
    ({"partiton": "gpu"}, "unknown key 'partiton'; allowed: partition, time, cpus_per_task"),
    ({"array": 0}, "array=0 is not allowed; allowed: an integer >= 1"),
    ({"time": 1.5}, "time=1.5 is not allowed; allowed: an integer >= 1"),
    ({"gpus": -1}, "gpus=-1 is not allowed; allowed: an integer >= 0"),
    ({"cpus_per_task": True}, "cpus_per_task=True is not allowed"),
    ({"mem": "lots"}, "mem='lots' is not allowed; allowed: an integer with an optional K, M, G"),
    ({"partition": "gpu; rm -rf /"}, "partition='gpu; rm -rf /' is not allowed"),
    ({"setup": "module load cuda"}, "setup='module load cuda' is not allowed; allowed: a list"),
    ([1, 2], "slurm: [1, 2] is not allowed; allowed: a mapping of partition, time"),
])
def test_bad_keys_are_refused_naming_the_file_the_key_and_what_is_allowed(tmp_path, slurm,
                                                                          message):
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump({"slurm": slurm}))
    with pytest.raises(ExperimentError) as info:
        load_experiment(path)
    assert str(info.value).startswith(f"{path}: slurm: ") and message in str(info.value)


def test_an_option_given_on_the_command_line_is_checked_too():
    with pytest.raises(ValueError, match="array=0 is not allowed; allowed: an integer >= 1"):
        parse_slurm({}).replace(array=0)
