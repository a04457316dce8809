"""A user's own space found by ``package.module:attribute`` and by an installed package's entry
point: the documented examples load, their closed forms match the built networks, a space that
breaks the protocol is refused in one line naming what is missing, and a user space enters the
run's fingerprint by its name and version (the built-ins' fingerprints stay as they were)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from kdnas.core import Architecture
from kdnas.experiment import SearchSettings, load_data, run_config
from kdnas.experiment._settings import check_user_space
from kdnas.models import count_multiply_adds, count_parameters, has_taps, network_taps
from kdnas.search.registry import DEFAULT_OPTIMIZER
from kdnas.spaces import get_space, space_identity, space_names
from kdnas.store import config_fingerprint
from user_spaces import install_entry_point, user_modules

_NO_VERSION = """
from toyspace import ToyMLPSpace


class Unversioned(ToyMLPSpace):
    version = None
"""

_HALF = """
class Half:
    name = "broken"
    benchmark_key = None
    feature_names = ("a",)
    original = "not a method"

    def sample(self, rng):
        return None
"""


def test_documented_spaces_load_by_module_attribute_and_their_sizes_are_exact(
    tmp_path: Path,
) -> None:
    with user_modules(tmp_path):
        for spec, name in (("toyspace:ToyMLPSpace", "toy_mlp"), ("toycnn:ToyCNNSpace", "toy_cnn")):
            space = get_space(spec)
            assert space.name == name and get_space(name) is space  # one object, two names
            assert space_identity(spec) == {"name": name, "version": "1"}
            rng = np.random.default_rng(0)
            for arch in [space.original(), *(space.sample(rng) for _ in range(4))]:
                assert space.contains(arch)
                for channels, side, classes in ((3, 32, 100), (1, 16, 10)):
                    network = space.build_network(arch, classes, channels)
                    # torch's own count and the forward hooks against the docs' closed forms
                    assert count_parameters(network) == space.parameter_count(
                        arch, classes, channels
                    )
                    assert count_multiply_adds(
                        network, (channels, side, side)
                    ) == space.multiply_adds(arch, side, channels, classes)
        import torch

        mlp = get_space("toy_mlp").build_network(Architecture("toy_mlp", (64, 64)), 10, 1)
        cnn = get_space("toy_cnn").build_network(get_space("toy_cnn").original(), 10, 1)
        assert not has_taps(mlp) and has_taps(cnn)
        images = torch.zeros(2, 1, 16, 16)
        taps = network_taps(mlp, images)  # the logits alone for a network without taps
        assert taps.feature_maps == () and tuple(taps.embedding.shape) == (2, 0)
        assert torch.equal(taps.logits, mlp(images))
        cnn_taps = network_taps(cnn, images)
        assert [tuple(m.shape[2:]) for m in cnn_taps.feature_maps] == [
            (16, 16),
            (16, 16),
            (8, 8),
            (4, 4),
        ]


def test_a_space_that_breaks_the_protocol_is_refused_in_one_line(tmp_path: Path) -> None:
    with user_modules(tmp_path, {"half": _HALF}):
        with pytest.raises(ValueError) as refused:
            get_space("half:Half")
        message = str(refused.value)
        assert "\n" not in message
        assert message.endswith(
            "missing: original (not callable), validate, contains, features, "
            "feature_matrix, parameter_count, multiply_adds, describe, build_network"
        )
        with pytest.raises(ValueError, match=r"no module named 'nosuch'"):
            get_space("nosuch.module:Space")
        with pytest.raises(ValueError, match=r"toyspace has no attribute 'ToyMLP'"):
            get_space("toyspace:ToyMLP")
        with pytest.raises(ValueError, match=r"valid: mobilenetv2, shufflenetv2, .*package"):
            get_space("toy_mlpp")


def test_an_installed_entry_point_is_listed_loaded_and_versioned_by_its_package(
    tmp_path: Path,
) -> None:
    with user_modules(tmp_path, {"unversioned": _NO_VERSION}):
        install_entry_point(tmp_path, "toy_mlp", "unversioned:Unversioned", version="0.3")
        assert "toy_mlp" in space_names()
        space = get_space("toy_mlp")
        assert type(space).__name__ == "Unversioned"
        # No version of its own: the distribution's.
        assert space_identity("toy_mlp") == {"name": "toy_mlp", "version": "0.3"}
    with user_modules(tmp_path / "other"):
        install_entry_point(tmp_path / "other", "toy_net", "toyspace:ToyMLPSpace")
        with pytest.raises(ValueError, match="must equal the space's name 'toy_mlp'"):
            get_space("toy_net")


def test_a_user_space_enters_the_fingerprint_by_name_and_version(tmp_path: Path) -> None:
    builtin = SearchSettings(space="mobilenetv2", n_candidates=2, n_lf=1)
    data = load_data(builtin)
    config = run_config(builtin, data, [get_space("mobilenetv2").original()])
    assert config["space"] == "mobilenetv2" and "space_version" not in config

    def fingerprint(spec: str) -> str:
        settings = SearchSettings(space=spec, n_candidates=2, n_lf=1)
        archs = [Architecture("toy_mlp", (64, 64)), Architecture("toy_mlp", (128, 64))]
        return config_fingerprint(run_config(settings, data, archs))

    with user_modules(tmp_path / "a"):
        by_module = fingerprint("toyspace:ToyMLPSpace")
        assert (
            run_config(SearchSettings(space="toy_mlp", n_candidates=2, n_lf=1), data, [])[
                "space_version"
            ]
            == "1"
        )
    with user_modules(tmp_path / "b"):
        install_entry_point(tmp_path / "b", "toy_mlp", "toyspace:ToyMLPSpace")
        assert fingerprint("toy_mlp") == by_module  # either way of naming it resumes the run
    bumped = (tmp_path / "a" / "toyspace.py").read_text().replace('version = "1"', 'version = "2"')
    with user_modules(tmp_path / "c", {"toyspace": bumped}):
        assert fingerprint("toyspace:ToyMLPSpace") != by_module


def test_methods_that_need_taps_are_refused_for_a_space_without_them(tmp_path: Path) -> None:
    with user_modules(tmp_path):
        for method, refused in (
            ("nst", True),
            ("attention", True),
            ("kd", False),
            ("nokd", False),
        ):
            settings = SearchSettings(
                space="toyspace:ToyMLPSpace",
                algorithm="alg2",
                method=method,
                n_lf=1,
                n_candidates=2,
            )
            data = load_data(settings)
            if refused:
                with pytest.raises(ValueError, match=f"method '{method}' needs") as error:
                    check_user_space(get_space(settings.space), settings, data)
                assert "--method nokd or kd" in str(error.value)
            else:
                check_user_space(get_space(settings.space), settings, data)
            # The default optimizer distills from nothing: any method's name is inert there.
            default = dataclasses.replace(settings, algorithm=DEFAULT_OPTIMIZER)
            check_user_space(get_space(settings.space), default, data)
        settings = SearchSettings(
            space="toycnn:ToyCNNSpace", algorithm="alg2", method="nst", n_lf=1, n_candidates=2
        )
        check_user_space(get_space(settings.space), settings, load_data(settings))
