"""Every Python name README documents (`unetbench.x.y`) can be imported."""

import importlib
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_documented_python_name_imports():
    names = sorted(set(re.findall(r"`(unetbench(?:\.[A-Za-z_]\w*)+)`", README.read_text())))
    assert "unetbench.model.UNet" in names
    missing = []
    for name in names:
        parts = name.split(".")
        for split in range(len(parts), 0, -1):  # the longest importable module, then attributes
            try:
                target = importlib.import_module(".".join(parts[:split]))
            except ModuleNotFoundError:
                continue
            try:
                for attribute in parts[split:]:
                    target = getattr(target, attribute)
            except AttributeError:
                missing.append(name)
            break
        else:
            missing.append(name)
    assert missing == []
