"""Small builders shared by the tests."""

from __future__ import annotations

from unetbench.spec import DataSpec, SplitSpec, SyntheticSpec


def synthetic_data(
    dataset: str, *, samples: int = 4, height: int = 96, width: int = 128, seed: int = 3
) -> DataSpec:
    return DataSpec(
        dataset=dataset,
        split=SplitSpec(train=(0,), evaluation=(1,)),
        synthetic=SyntheticSpec(samples=samples, height=height, width=width, seed=seed),
    )
