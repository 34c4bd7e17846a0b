"""The top-level API (lazy) and the catalogues every registry is built on."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

from sparsearch.catalogue import Catalogue, UnknownName


def test_version_and_api_without_importing_torch():
    code = ("import sys, sparsearch; print(sparsearch.__version__); "
            "print(sorted(m for m in ('torch', 'optuna', 'mlflow', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0].count(".") >= 2
    assert out[1] == "[]"


def test_api_names_are_what_they_say_even_after_their_modules_load():
    import sparsearch
    import sparsearch.evaluate  # noqa: F401  (the module shares the function's name)
    from sparsearch.pareto import pareto_front

    assert callable(sparsearch.evaluate) and sparsearch.evaluate.__name__ == "evaluate"
    assert sparsearch.pareto_front is pareto_front
    assert sparsearch.pareto_front([[0.9, 0.5], [0.8, 0.6], [0.95, 0.7]], ["max", "min"]) \
        == [0, 2]
    assert set(sparsearch.__all__) == {
        "__version__", "run_search", "load_space", "SearchSpace", "SubnetSpec", "evaluate",
        "TrialResult", "pareto_front", "hypervolume"}
    with pytest.raises(AttributeError):
        sparsearch.not_a_name  # noqa: B018


def test_catalogue_sorts_warns_on_overwrite_and_names_the_allowed():
    things: Catalogue[int] = Catalogue("thing", field="search.thing")
    things.register("b", 2)
    things.register("a", 1)
    assert things.names() == ["a", "b"] and things.get("a") == 1
    with pytest.warns(RuntimeWarning, match="thing 'a' registered twice"):
        things.register("a", 3)
    assert things.get("a") == 3
    with pytest.raises(UnknownName) as err:
        things.get("c")
    assert str(err.value) == "search.thing must be one of ['a', 'b'], got 'c'"


def test_lazy_entries_import_once_asked_and_do_not_warn():
    things: Catalogue[object] = Catalogue("thing")
    things.register_lazy("dumps", "json:dumps")
    assert things.names() == ["dumps"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        import json

        assert things.get("dumps") is json.dumps


def test_strategies_and_runners_are_read_from_their_catalogues():
    from sparsearch.runners import RUNNERS
    from sparsearch.search.strategies import STRATEGIES

    assert STRATEGIES.names() == ["dass", "dass_tpe", "nsga2", "random", "tpe"]
    assert RUNNERS.names() == ["local", "ray"]
