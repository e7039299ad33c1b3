"""python -m bench: the README table update."""

import pytest

from bench.__main__ import README_END, README_START, update_readme


def test_update_readme_replaces_only_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n{README_START}\nold table\n{README_END}\nafter\n")
    update_readme(readme, "python -m bench", "| new | table |")
    text = readme.read_text()
    assert text.startswith("# title\n") and text.endswith(f"{README_END}\nafter\n")
    assert "old table" not in text and "| new | table |" in text and "`python -m bench` on " in text


def test_update_readme_without_markers_says_so(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit, match="markers"):
        update_readme(readme, "python -m bench", "| t |")
