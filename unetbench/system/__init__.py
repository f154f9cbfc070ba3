"""The machine a run works on: atomic writes, the CPU's share, interrupts, torchrun's processes and the
device (precision, layout, memory). Below everything that trains, predicts or records."""
