"""A Ray task for tests/test_ray_executor.py that fails once: not collected by pytest.

The first attempt of the ``no-weightmap`` run ends its own process at iteration ``FAIL_AT`` (after the
checkpoint of iteration 20), as a lost node would end it; Ray retries the task, which resumes the run.
"""

from __future__ import annotations

import os

from unetbench.ablation import ray as ray_executor
from unetbench.training import trainer

FAIL_AT = 30


def fail_once(planned, directory, data_root, board, cpus, command):
    marker = planned.directory.parent / f"{planned.directory.name}.failed-once"
    if planned.variant == "no-weightmap" and not marker.exists():
        marker.touch()
        original = trainer.Trainer.step

        def step(self, batch=None):
            if self.iteration == FAIL_AT:
                os._exit(1)  # no cleanup, no checkpoint: the process is gone
            return original(self, batch)

        trainer.Trainer.step = step
    return ray_executor.run_planned(planned, directory, data_root, board, cpus, command)
