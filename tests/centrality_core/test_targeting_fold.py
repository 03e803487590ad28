"""Targeting and folding: pure functions over views of a fleet."""

from __future__ import annotations

import time

import pytest

from centrality_core import fold, hostlist
from centrality_core.errors import UsageError
from centrality_core.targeting import MachineView, Selector, resolve

FLEET = [
    MachineView("gpu01", "live", {"pool": "train", "rack": "a"}),
    MachineView("gpu02", "live", {"pool": "train", "rack": "b"}),
    MachineView("gpu03", "limbo", {"pool": "train"}),
    MachineView("gpu04", "dead", {"pool": "eval"}),
    MachineView("gpu05", "live", {"pool": "eval"}, drained=True),
    MachineView("gpu10", "live", {"pool": "eval", "gpu": "h100"}),
    MachineView("cpu-1", "live", {}),
    MachineView("cpu-2", "live", {}),
    MachineView("web.example", "live", {}),
]


def sel(*targets, labels=(), all=False, include_drained=False):
    return resolve(FLEET, Selector(tuple(targets), tuple(labels), all, include_drained))


def test_range_selects_live_and_reports_skipped_with_reasons():
    r = sel("gpu[01-05]")
    assert r.selected == ["gpu01", "gpu02"]
    assert r.skipped == [("gpu03", "limbo"), ("gpu04", "dead"), ("gpu05", "drained")]
    assert r.unknown == []


def test_include_drained():
    assert sel("gpu05", include_drained=True).selected == ["gpu05"]


def test_range_naming_missing_machines_reports_them_folded():
    r = sel("gpu[01-02,06-09]")
    assert r.selected == ["gpu01", "gpu02"]
    assert r.unknown == ["gpu[06-09]"]


def test_names_globs_and_lists_are_a_union_in_natural_order():
    assert sel("gpu10", "gpu0[1-2]", "cpu-*").selected == ["cpu-1", "cpu-2", "gpu01", "gpu02", "gpu10"]
    assert sel("cpu-[1-2],web.example").selected == ["cpu-1", "cpu-2", "web.example"]
    assert sel("gpu?1").selected == ["gpu01"]
    assert sel("gpu0[ab12]").selected == ["gpu01", "gpu02"]  # not a range: a glob class
    assert sel("gpu0[12]").unknown == ["gpu0[12]"]  # a range: gpu012


def test_unknown_names_and_empty_globs():
    r = sel("gpu01", "nope", "zzz-*")
    assert r.selected == ["gpu01"] and r.unknown == ["nope", "zzz-*"]


def test_labels_filter_the_fleet_or_the_targets():
    assert sel(labels=["pool=eval"]).selected == ["gpu10"]
    assert sel(labels=["pool=eval"]).skipped == [("gpu04", "dead"), ("gpu05", "drained")]
    assert sel("gpu0[1-9]", labels=["pool=train", "rack=b"]).selected == ["gpu02"]
    assert sel(labels=["gpu"]).selected == ["gpu10"]  # KEY alone: the label is set
    assert sel(labels=["pool="]).selected == []


def test_all():
    r = sel(all=True)
    assert r.selected == ["cpu-1", "cpu-2", "gpu01", "gpu02", "gpu10", "web.example"]
    assert {n for n, _ in r.skipped} == {"gpu03", "gpu04", "gpu05"}


@pytest.mark.parametrize("kwargs, words", [
    ({}, "name the machines"),
    ({"all": True, "targets": ("gpu01",)}, "--all cannot"),
    ({"targets": ("@rack1",)}, "groups"),
    ({"targets": ("gpu[01-",)}, "invalid hostlist"),
    ({"targets": ("x[1-100000000]",)}, "more than"),
    ({"targets": ("x[1-1000]y[1-1000]",)}, "more than"),
    ({"labels": ("=v",)}, "invalid label"),
])
def test_bad_selectors(kwargs, words):
    targets = kwargs.pop("targets", ())
    with pytest.raises(UsageError, match=words):
        resolve(FLEET, Selector(targets, **kwargs))


def test_huge_range_is_refused_before_clustershell_expands_it():
    start = time.monotonic()
    with pytest.raises(UsageError):
        hostlist.expand("node[1-1000000000000]")
    assert time.monotonic() - start < 0.5


def test_estimate_counts_terms_not_products_of_unrelated_brackets():
    assert hostlist.estimate("a[1-1000],b[1-1000]") == 2000
    assert hostlist.estimate("r[1-4]n[01-16]") == 64
    assert hostlist.estimate("n[1-10/2]") == 5


def test_fold_groups_identical_values_biggest_first():
    outputs = {f"gpu{i:02d}": "ok\n" for i in range(1, 13)}
    outputs.update({"gpu07": "ECC error\n", "cpu-3": "ok\n"})
    groups = fold.group(outputs)
    assert [(g.folded, g.key, len(g)) for g in groups] == [
        ("cpu-3,gpu[01-06,08-12]", "ok\n", 12), ("gpu07", "ECC error\n", 1)]
    assert groups[0].names[:3] == ("cpu-3", "gpu01", "gpu02")


def test_fold_names_multi_dimension_and_natural_sort():
    assert hostlist.fold(["r1n01", "r1n02", "r2n01"]) in ("r1n[01-02],r2n01", "r[1-2]n01,r1n02")
    assert sorted(["gpu10", "gpu2", "gpu1"], key=hostlist.natural_key) == ["gpu1", "gpu2", "gpu10"]
    assert hostlist.fold([]) == ""


def test_selector_describe_for_the_audit():
    assert Selector(("gpu[01-04]",), ("pool=eval",)).describe() == "gpu[01-04] -l pool=eval"
    assert Selector(all=True, include_drained=True).describe() == "--all --include-drained"
