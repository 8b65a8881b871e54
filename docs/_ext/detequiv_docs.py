"""Local Sphinx helpers for the detequiv docs (no network, no generated files).

``.. public-names:: PACKAGE``
    A list of the names in ``PACKAGE.__all__``, grouped by the module that defines
    them, each linked to its documentation there. It is computed from ``__all__`` at
    build time, so it cannot drift from the code, and it documents nothing itself (no
    duplicate object descriptions for re-exported names).

``known_docstring_warnings`` (a ``conf.py`` value)
    ``(object, message)`` pairs: a warning whose location names ``object`` and whose
    text contains ``message`` is dropped. Each entry is a known defect of one docstring
    waiting to be fixed in the package; every other warning still fails the build.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from docutils.utils import get_source_line
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles


def _role(obj: Any) -> str:
    if inspect.isclass(obj):
        return "py:class"
    if callable(obj):  # functions, also wrapped ones (functools.cache)
        return "py:func"
    return "py:obj"


class PublicNames(SphinxDirective):
    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        package = importlib.import_module(self.arguments[0])
        groups: dict[str, list[str]] = {}
        for name in package.__all__:
            obj = getattr(package, name)
            if inspect.ismodule(obj) or name.startswith("__"):
                continue
            module = getattr(obj, "__module__", None) or package.__name__
            qual = getattr(obj, "__qualname__", name)
            groups.setdefault(module, []).append(f":{_role(obj)}:`~{module}.{qual}`")
        lines = [f"* :mod:`{module}`: " + ", ".join(refs) for module, refs in sorted(groups.items())]
        container = nodes.container()
        nested_parse_with_titles(self.state, StringList(lines, source=self.get_source_info()[0]), container)
        return container.children


def _where(location: Any) -> str:
    """The location as Sphinx prints it (``source:line``), from a string, pair or node."""
    if location is None:
        return ""
    if isinstance(location, nodes.Node):
        source, line = get_source_line(location)
        return f"{source}:{line}"
    if isinstance(location, tuple):
        return ":".join(str(x) for x in location)
    return str(location)


class _KnownWarnings(logging.Filter):
    def __init__(self, app: Sphinx) -> None:
        super().__init__()
        self.app = app

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            known = self.app.config.known_docstring_warnings
        except AttributeError:
            return True
        if record.levelno < logging.WARNING:
            return True
        where = _where(getattr(record, "location", None))
        text = record.getMessage()
        return not any(obj in where and msg in text for obj, msg in known)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("public-names", PublicNames)
    app.add_config_value("known_docstring_warnings", [], "env")
    sphinx_logger = logging.getLogger("sphinx")
    for handler in sphinx_logger.handlers:
        if handler.level == logging.WARNING or type(handler).__name__ == "WarningStreamHandler":
            # first, before Sphinx counts the warning (or raises on it with -W)
            handler.filters.insert(0, _KnownWarnings(app))
    return {"parallel_read_safe": True, "parallel_write_safe": True}
