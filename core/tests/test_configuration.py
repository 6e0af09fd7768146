"""Docs that match the code: every environment variable the settings read is documented."""

import re

from testsupport import REPO_ROOT


def variables_read_by(path):
    text = (REPO_ROOT / path).read_text()
    return (
        set(re.findall(r'env_\w+\(\s*"([A-Z][A-Z0-9_]+)"', text))
        | set(re.findall(r'_mpesa_value\("([A-Z_]+)"\)', text))
        | set(re.findall(r'os\.environ\.get\("([A-Z][A-Z0-9_]+)"', text))
    )


def test_every_setting_is_in_env_example_and_the_readme():
    documented = set(
        re.findall(r"^([A-Z][A-Z0-9_]+)=", (REPO_ROOT / ".env.example").read_text(), re.M)
    )
    readme = (REPO_ROOT / "README.md").read_text()
    read = variables_read_by("gunicorn.conf.py").union(
        *(
            variables_read_by(path.relative_to(REPO_ROOT))
            for path in (REPO_ROOT / "mpesa_project" / "settings").glob("*.py")
        )
    )
    assert read - documented == set()
    missing_in_readme = {
        name for name in read if name not in readme and not name.startswith("DJANGO_SECURE_HSTS")
    }
    assert missing_in_readme == set()
