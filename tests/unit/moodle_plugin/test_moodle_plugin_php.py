"""The Moodle plugin (moodle/local_segmentsync) passes `php -l` and its standalone PHPUnit suite.

The plugin is PHP and Moodle cannot run here; its suite runs without Moodle, on stand-ins
(moodle/local_segmentsync/tests/standalone). Needs Debian's php-cli and phpunit (.ci/run installs
them); without them these tests skip and say so.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PLUGIN = ROOT / "moodle" / "local_segmentsync"
INSTALL = "install them with: apt-get install -y php-cli phpunit (.ci/run does)"


def _php_files() -> list[Path]:
    return sorted(PLUGIN.rglob("*.php"))


def test_plugin_has_its_moodle_files() -> None:
    """The files Moodle looks for in a local plugin are there (checked without PHP)."""
    for name in ("version.php", "settings.php", "lib.php", "lang/en/local_segmentsync.php", "db/install.xml",
                 "db/events.php", "db/tasks.php", "db/services.php", "db/access.php", "classes/observer.php",
                 "classes/privacy/provider.php", "classes/task/push_queue.php",
                 "classes/external/get_profile_fields.php", "README.md"):
        assert (PLUGIN / name).is_file(), name
    assert len(_php_files()) > 30


def test_php_lint_every_file() -> None:
    """`php -l` accepts every PHP file of the plugin, tests and stand-ins included."""
    php = shutil.which("php")
    if php is None:
        pytest.skip(f"php is not installed; {INSTALL}")
    files = _php_files()
    assert len(files) > 30, "the plugin's PHP files are missing"
    failures = []
    for path in files:
        out = subprocess.run([php, "-l", str(path)], capture_output=True, text=True)
        if out.returncode != 0:
            failures.append(f"{path.relative_to(ROOT)}: {out.stdout.strip()} {out.stderr.strip()}")
    assert not failures, "\n".join(failures)


def test_phpunit_standalone_suite() -> None:
    """The plugin's PHPUnit suite passes (mapping, batching, sending, observers, end to end)."""
    php, phpunit = shutil.which("php"), shutil.which("phpunit")
    if php is None or phpunit is None:
        pytest.skip(f"php or phpunit is not installed; {INSTALL}")
    config = PLUGIN / "tests" / "standalone" / "phpunit.xml"
    out = subprocess.run([phpunit, "-c", str(config)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "OK (" in out.stdout, out.stdout[-2000:]
