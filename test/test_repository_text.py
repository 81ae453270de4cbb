"""The repository's front door stays true: the README is short, its set-up and test commands are the ones CI runs,
the pages it links exist, and no text speaks of development history instead of the project."""
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_readme_is_at_most_300_lines():
    assert len(README.splitlines()) <= 300


def test_ci_runs_the_readmes_own_two_commands():
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()
          if ln.strip() and not ln.lstrip().startswith(("#", "set ", "cd "))]
    assert ci == ["./scripts/setup.sh", "./scripts/test.sh"]
    block = README.split("## Set up and test", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    assert [ln.split("#")[0].strip() for ln in block.splitlines() if ln.split("#")[0].strip()] == ci


def test_every_local_link_in_the_readme_and_docs_exists():
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_no_text_speaks_of_development_sessions():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    word = "sess" + "ion"  # spelled apart so that this file does not match its own pattern
    pattern = re.compile(rf"[0-9]+(st|nd|rd|th) {word}|this {word}|last {word}", re.IGNORECASE)
    hits = [f for f in files if (ROOT / f).suffix in {".md", ".py", ".yaml", ".txt", ".sh", ".cfg", ".xml"}
            and (ROOT / f).is_file() and pattern.search((ROOT / f).read_text(errors="replace"))]
    assert hits == []
