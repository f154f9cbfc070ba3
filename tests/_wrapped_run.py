"""``unetbench`` with test instruments, run as a subprocess by tests/helpers.start_run.

Not collected by pytest. The instruments change no result, only timing and fate:

- every training step prints ``iteration N`` on stderr (so a test can signal at a known point);
- UNETBENCH_TEST_STEP_SECONDS: sleep this long after each step (a slow run to interrupt);
- UNETBENCH_TEST_KILL_AT: SIGKILL this process right after step N (no cleanup, no checkpoint);
- UNETBENCH_TEST_SIGNAL_AT: ``NAME:N``, send this process the signal NAME (SIGINT, SIGTERM) right after
  step N: a real signal at a known step, with no timing window;
- UNETBENCH_TEST_PAUSE_AT: after step N, print ``paused at N`` on stderr and sleep (a test then kills
  the process, or under torchrun every process, at a known step; the checkpoints before N are on disk);
- UNETBENCH_TEST_HANG_IN_CHECKPOINT: when the checkpoint of iteration N is being written, write half
  of its bytes, print ``mid-write``, and hang (a test then kills the process mid-write).
- UNETBENCH_TEST_FILE_LIMIT_AT: ``STAGE:BYTES``, STAGE one of checkpoint, predictions, record: when the
  stage begins, lower this process's file-size limit (RLIMIT_FSIZE) to BYTES, so that the operating system
  refuses the stage's write (EFBIG) as it would a file too large for its limit.
"""

import io
import os
import resource
import signal
import sys
import time

import torch

from unetbench.run import runner
from unetbench.training import trainer

step_seconds = float(os.environ.get("UNETBENCH_TEST_STEP_SECONDS", "0"))
kill_at = int(os.environ.get("UNETBENCH_TEST_KILL_AT", "-1"))
signal_name, _, signal_step = os.environ.get("UNETBENCH_TEST_SIGNAL_AT", "").partition(":")
hang_at = int(os.environ.get("UNETBENCH_TEST_HANG_IN_CHECKPOINT", "-1"))
pause_at = int(os.environ.get("UNETBENCH_TEST_PAUSE_AT", "-1"))

original_step = trainer.Trainer.step


def step(self):
    loss = original_step(self)
    print(f"iteration {self.iteration}", file=sys.stderr, flush=True)
    if self.iteration == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    if signal_name and self.iteration == int(signal_step):
        os.kill(os.getpid(), getattr(signal, signal_name))
    if self.iteration == pause_at:
        print(f"paused at {pause_at}", file=sys.stderr, flush=True)
        time.sleep(600)
    if step_seconds:
        time.sleep(step_seconds)
    return loss


original_save = torch.save


def save(obj, f, *args, **kwargs):
    if isinstance(obj, dict) and obj.get("iteration") == hang_at and hasattr(f, "write"):
        buffer = io.BytesIO()
        original_save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        print("mid-write", file=sys.stderr, flush=True)
        time.sleep(600)
    return original_save(obj, f, *args, **kwargs)


trainer.Trainer.step = step
torch.save = save

limit_stage, _, limit_bytes = os.environ.get("UNETBENCH_TEST_FILE_LIMIT_AT", "").partition(":")
STAGES = {
    "checkpoint": (trainer.Trainer, "save"),
    "predictions": (runner, "predict"),
    "record": (runner, "record"),
}


def limited(original):
    def wrapper(*args, **kwargs):
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit_bytes), resource.RLIM_INFINITY))
        return original(*args, **kwargs)

    return wrapper


if limit_stage:
    owner, name = STAGES[limit_stage]
    setattr(owner, name, limited(getattr(owner, name)))

from unetbench.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
