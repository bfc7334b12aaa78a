"""The package list, which pyproject.toml cannot say: ``web/`` ships as the package ``sessionhub_web``.

The pages are not Python, but an installed server must find them (and the Lua scripts, data of
``storage``) next to its code; server/settings.py finds ``sessionhub_web`` when no checkout's web/
is beside the code. Everything else is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

CODE = ["server", "handlers", "jobs", "auth", "storage", "protocol"]
# web/ and its folders, each a (namespace) package of data: setuptools ships no folder that is not one.
WEB_FOLDERS = ["", ".css", ".js", ".vendor"]

setup(
    # Namespace packages: the lua/ folders are found as packages, so their scripts are not "ignored".
    packages=[
        *find_namespace_packages(include=[p for name in CODE for p in (name, f"{name}.*")]),
        *(f"sessionhub_web{sub}" for sub in WEB_FOLDERS),
    ],
    package_dir={f"sessionhub_web{sub}": f"web{sub.replace('.', '/')}" for sub in WEB_FOLDERS},
    package_data={
        "storage": ["lua/*/*.lua", "*/lua/*.lua"],
        **{f"sessionhub_web{sub}": ["*"] for sub in WEB_FOLDERS},
    },
)
