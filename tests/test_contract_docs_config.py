"""README.md's Configuration, against what the code reads: every environment variable any module
reads (not only Settings: the admin CLI's token, the log format read before Settings, the
Prometheus folder), and the accepted range of every bounded setting, which a value outside stops
the start with (README: a refused start names it)."""

from __future__ import annotations

import ast

import annotated_types
from pydantic.fields import FieldInfo

from server.settings import Settings
from tests.test_protocol_doc import README, _configuration_rows, _environment_names

ROOT = README.parent
PACKAGES = ("server", "handlers", "storage", "auth", "jobs", "protocol")


def _constants(trees: list[ast.Module]) -> dict[str, str]:
    """Every module-level ``NAME = "TEXT"`` of the packages (a variable's name kept in a constant)."""
    found: dict[str, str] = {}
    for tree in trees:
        for node in tree.body:
            if not isinstance(node, ast.Assign) or not isinstance(node.value, ast.Constant):
                continue
            if isinstance(node.value.value, str):
                found.update({t.id: node.value.value for t in node.targets if isinstance(t, ast.Name)})
    return found


def _is_environ(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def _read_names(tree: ast.Module) -> list[ast.expr]:
    """What ``os.environ.get(X)``, ``os.environ[X]`` and ``os.getenv(X)`` are given in one module."""
    read: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            if (node.func.attr == "get" and _is_environ(node.func.value)) or node.func.attr == "getenv":
                read.append(node.args[0])
        elif isinstance(node, ast.Subscript) and _is_environ(node.value):
            read.append(node.slice)
    return read


def environment_reads() -> set[str]:
    """Every variable name the packages read from the environment themselves."""
    trees = [ast.parse(path.read_text(encoding="utf-8")) for p in PACKAGES for path in (ROOT / p).rglob("*.py")]
    constants = _constants(trees)
    names: set[str] = set()
    for tree in trees:
        for arg in _read_names(tree):
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.add(arg.value)
            elif isinstance(arg, ast.Name):
                assert arg.id in constants, f"an environment read through {arg.id}, not a constant"
                names.add(constants[arg.id])
            else:
                raise AssertionError(f"an environment read of a computed name: {ast.unparse(arg)}")
    return names


def test_every_variable_any_module_reads_is_configuration() -> None:
    read = environment_reads()
    assert {"SESSIONHUB_LOG_FORMAT", "PROMETHEUS_MULTIPROC_DIR"} <= read  # the scan finds reads
    assert read - set(_configuration_rows()) == set()


def _number(value: object) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def accepted_range(field: FieldInfo) -> str | None:
    """A bounded setting's range as README writes it: ``range 1\u201316`` (an en dash), ``range ≥ 8``, ``range > 0,
    ≤ 3600``."""
    low = high = ""
    for bound in field.metadata:
        if isinstance(bound, annotated_types.Ge):
            low = f"≥ {_number(bound.ge)}"
        elif isinstance(bound, annotated_types.Gt):
            low = f"> {_number(bound.gt)}"
        elif isinstance(bound, annotated_types.Le):
            high = f"≤ {_number(bound.le)}"
        elif isinstance(bound, annotated_types.Lt):
            high = f"< {_number(bound.lt)}"
    if low.startswith("≥") and high.startswith("≤"):
        return f"range {low[2:]}\u2013{high[2:]}"
    said = ", ".join(bound for bound in (low, high) if bound)
    return f"range {said}" if said else None


def test_every_bounded_setting_states_its_range() -> None:
    rows = _configuration_rows()
    read = _environment_names()
    lines = {
        line.split(" | ")[0]: line for line in README.read_text(encoding="utf-8").splitlines() if line.startswith("| `")
    }
    missing = {}
    checked = 0
    for name, (names, _) in rows.items():
        field = Settings.model_fields.get(read.get(name, ""))
        said = None if field is None else accepted_range(field)
        if said is None:
            continue
        checked += 1
        line = next(text for first, text in lines.items() if f"`{name}`" in first)
        # A row of two settings says each one's range after its name (two names of one: one range).
        alone = len({read.get(n) for n in names}) == 1
        expected = said if alone else f"`{name}` {said.removeprefix('range ')}"
        if expected not in line:
            missing[name] = expected
    assert checked > 80
    assert missing == {}
