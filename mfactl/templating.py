"""The one way mfactl builds a Jinja2 environment: sandboxed, for emails and web pages alike.

Templates come from an administrator's folder as well as from the package, and a plain
``Environment`` lets a template reach Python (``cycler.__init__.__globals__.os``): every
template is rendered in ``ImmutableSandboxedEnvironment``, which refuses attribute access to
internals and any change to the values it is given (SecurityError, a TemplateError).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
)
from jinja2.sandbox import ImmutableSandboxedEnvironment

from mfactl.errors import ConfigError


class PackagedLoader(BaseLoader):
    """The templates shipped in one folder of the mfactl.templates package (a wheel or a
    checkout)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, Any]:
        resource = files("mfactl.templates") / self.folder / template
        if not resource.is_file():
            raise TemplateNotFound(template)
        # the name messages give for a packaged template (there is no file to point at in a wheel)
        where = f"templates/{self.folder}/{template} (packaged)"
        return resource.read_text(encoding="utf-8"), where, lambda: True


def sandboxed_environment(
    folder: str,
    templates_dir: str | None,
    setting: str,
    *,
    autoescape: bool | Callable[[str | None], bool],
) -> ImmutableSandboxedEnvironment:
    """Templates from ``templates_dir`` (named by ``setting`` in messages) when set, else the
    packaged ``templates/<folder>``; undefined names are errors, never blanks."""
    loaders: list[BaseLoader] = [PackagedLoader(folder)]
    if templates_dir:
        if not Path(templates_dir).is_dir():
            raise ConfigError(f"{setting}: {templates_dir} is not a folder")
        loaders.insert(0, FileSystemLoader(templates_dir))
    return ImmutableSandboxedEnvironment(
        loader=ChoiceLoader(loaders),
        autoescape=autoescape,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
