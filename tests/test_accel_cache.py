"""The speed layer's derived-tensor cache is bounded by bytes across modules, and eviction never changes a result."""

import gc

import pytest
import torch
from torch import nn

import hiermlp
from hiermlp.accel import cache as accel_cache
from hiermlp.testing import TINY_SWIN, fast, randomize_

KIB = 1024


@pytest.fixture
def budget(monkeypatch):
    accel_cache.clear()

    def set_budget(nbytes: int) -> None:
        monkeypatch.setattr(accel_cache, "CACHE_BYTES", nbytes)

    yield set_budget
    accel_cache.clear()


def build_counter(numel: int):
    calls = []

    def build() -> torch.Tensor:
        calls.append(1)
        return torch.zeros(numel)  # float32: 4 bytes each

    return build, calls


def test_eviction_by_bytes_is_least_recently_used_across_modules(budget):
    budget(10 * KIB)
    mods = [nn.Linear(1, 1) for _ in range(4)]
    builds = [build_counter(KIB) for _ in mods]  # 4 KiB each: two fit, three do not
    for m, (b, _) in zip(mods[:2], builds):
        accel_cache.derived(m, "k", (), (), b)
    assert accel_cache.cached_bytes() == 8 * KIB
    accel_cache.derived(mods[0], "k", (), (), builds[0][0])  # a hit: mods[0] is now the most recent
    assert len(builds[0][1]) == 1
    accel_cache.derived(mods[2], "k", (), (), builds[2][0])
    assert [accel_cache.entries(m) for m in mods] == [1, 0, 1, 0]  # mods[1] was the least recently used
    assert accel_cache.cached_bytes() == 8 * KIB <= accel_cache.CACHE_BYTES
    accel_cache.derived(mods[1], "k", (), (), builds[1][0])  # evicted: rebuilt
    assert len(builds[1][1]) == 2 and [accel_cache.entries(m) for m in mods] == [0, 1, 1, 0]


def test_sources_snapshot_counts_and_freed_modules_release_their_bytes(budget):
    budget(64 * KIB)
    m = nn.Linear(1, 1)
    src = torch.randn(KIB)
    accel_cache.derived(m, "k", (), (src,), build_counter(KIB)[0])
    assert accel_cache.cached_bytes() == 8 * KIB  # the tensor and its source snapshot
    del m
    gc.collect()
    assert accel_cache.cached_bytes() == 0


def test_an_oversize_tensor_is_never_cached(budget):
    budget(10 * KIB)
    small, big = nn.Linear(1, 1), nn.Linear(1, 1)
    accel_cache.derived(small, "k", (), (), build_counter(KIB)[0])
    b, calls = build_counter(4 * KIB)  # 16 KiB > the whole budget
    for _ in range(3):
        out = accel_cache.derived(big, "k", (), (), b)
        assert out.shape == (4 * KIB,)
    assert len(calls) == 3 and accel_cache.entries(big) == 0
    assert accel_cache.entries(small) == 1 and accel_cache.cached_bytes() == 4 * KIB  # nothing else was evicted


def test_results_are_identical_with_and_without_eviction(budget):
    torch.manual_seed(0)
    model = randomize_(hiermlp.HierNet(**TINY_SWIN)).eval()
    sizes = [(32, 32), (40, 24), (27, 35), (32, 32)]
    xs = [torch.randn(2, 3, *s) for s in sizes]
    outs = {}
    with torch.no_grad(), fast(model, True):
        for nbytes in (64 * 2**20, 24 * KIB, 0):  # everything cached, evicting as it goes, nothing cached
            budget(nbytes)
            outs[nbytes] = [model(x) for x in xs + xs]
            assert accel_cache.cached_bytes() <= nbytes
            if nbytes == 64 * 2**20:
                assert accel_cache.cached_bytes() > 24 * KIB  # so the next budget evicts
    held = sum(accel_cache.entries(m) for m in model.modules())
    assert held == 0
    for nbytes in (24 * KIB, 0):
        for a, b in zip(outs[64 * 2**20], outs[nbytes], strict=True):
            assert torch.equal(a, b)
