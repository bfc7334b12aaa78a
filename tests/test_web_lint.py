"""`make test` lints and format-checks web/ with Biome (`biome ci`): a copy of web/ passes, and the
same copy with one CSS rule left open (as the stylesheet once was, unnoticed), one JS syntax error
or one line off the format fails."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIOME = ROOT / "tools" / "web" / "node_modules" / ".bin" / "biome"
LINT_TIMEOUT_S = 60


@pytest.fixture
def web_copy(tmp_path: Path) -> Path:
    """web/ (JS and CSS) and biome.json copied to a temporary project root."""
    if not BIOME.exists():
        reason = "Biome is installed by scripts/bootstrap.sh test (npm ci in tools/web)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    shutil.copy(ROOT / "biome.json", tmp_path / "biome.json")
    for folder in ("css", "js"):
        shutil.copytree(ROOT / "web" / folder, tmp_path / "web" / folder)
    return tmp_path


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    """The Makefile's web lint step, run in ``root``."""
    return subprocess.run(
        [str(BIOME), "ci", "--error-on-warnings", "--colors=off"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=LINT_TIMEOUT_S,
        check=False,
    )


def test_the_web_sources_pass(web_copy: Path) -> None:
    done = lint(web_copy)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_rule_left_open_fails_the_lint(web_copy: Path) -> None:
    css = web_copy / "web" / "css" / "app.css"
    text = css.read_text(encoding="utf-8")
    opened = text.replace("  max-width: 90vw;\n}\n", "  max-width: 90vw;\n\n", 1)
    assert opened != text, "the .toast rule this test opens has moved"
    css.write_text(opened, encoding="utf-8")
    done = lint(web_copy)
    assert done.returncode != 0
    assert "app.css" in done.stdout + done.stderr


def test_a_js_syntax_error_fails_the_lint(web_copy: Path) -> None:
    client = web_copy / "web" / "js" / "client.js"
    client.write_text(client.read_text(encoding="utf-8") + "\nexport function broken( {\n", encoding="utf-8")
    done = lint(web_copy)
    assert done.returncode != 0
    assert "client.js" in done.stdout + done.stderr


def test_a_file_off_the_format_fails_the_check(web_copy: Path) -> None:
    css = web_copy / "web" / "css" / "app.css"
    css.write_text(css.read_text(encoding="utf-8").replace("  margin: 0;\n", "margin:0;\n", 1), encoding="utf-8")
    done = lint(web_copy)
    assert done.returncode != 0
    assert "app.css" in done.stdout + done.stderr
