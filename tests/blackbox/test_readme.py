"""The README is where a new user starts: it must lead to the guides they need, and every link must open."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_readme_links_every_guide_and_no_link_is_broken():
    text = (ROOT / "README.md").read_text()
    links = set(re.findall(r"\]\(([^)#\s]+)\)", text))
    for guide in ("QUICKSTART.md", "docs/deploy.md", "docs/state-dir.md", "docs/cli.md", "docs/agents.md",
                  "docs/connectors.md", "docs/uploads.md"):
        assert guide in links, f"README.md does not link {guide}"
    broken = sorted(link for link in links if not link.startswith("http") and not (ROOT / link).exists())
    assert broken == [], f"README.md links files that do not exist: {broken}"
