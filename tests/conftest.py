"""Shared fixtures: where the real data lives, and skipping with a reason when it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("SUPN_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def require_data(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set SUPN_SHARED_DATA to ../shared/data)")
    return path


@pytest.fixture
def shared_data() -> Path:
    return require_data()


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny test models run fastest on one thread, and much slower with more on a busy 2-core CPU."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
