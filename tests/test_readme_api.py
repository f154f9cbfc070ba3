"""Every Python name README and docs/ document (`unetbench.x.y`) can be imported."""

import importlib
import re

from .helpers import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_every_documented_python_name_imports():
    text = "\n".join(page.read_text() for page in PAGES)
    names = sorted(set(re.findall(r"`(unetbench(?:\.[A-Za-z_]\w*)+)`", text)))
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
