"""Unknown fields: keys in a manifest that no model declares, found in the raw document.

Kubernetes warns about them (kubectl's field validation) and so do we; they never reach
the body. Walking the raw data against the models' declared aliases, rather than asking
pydantic, finds them even in an object that also has errors, so the user sees the typo
(``imagePullPolic``) next to the error it caused.
"""
from __future__ import annotations

import functools
import inspect
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from .documents import Path

MAX_REPORTED = 50

# alias -> None (a leaf, or a free-form map such as labels) or (is_list, model)
_Schema = dict[str, "tuple[bool, type[BaseModel]] | None"]


def unknown_fields(model: type[BaseModel], *, data: Any) -> list[Path]:
    """Paths (with Kubernetes names) of the keys in ``data`` that ``model`` does not know."""
    found: list[Path] = []
    _walk(model, data, (), found)
    return found


def _walk(model: type[BaseModel], data: Any, path: Path, found: list[Path]) -> None:
    if not isinstance(data, dict):
        return
    schema = _schema(model)
    for key, value in data.items():
        if len(found) >= MAX_REPORTED:
            return
        if key not in schema:
            found.append((*path, key))
            continue
        child = schema[key]
        if child is None:
            continue
        many, sub = child
        if many:
            if isinstance(value, list):
                for index, item in enumerate(value):
                    _walk(sub, item, (*path, key, index), found)
        else:
            _walk(sub, value, (*path, key), found)


@functools.cache
def _schema(model: type[BaseModel]) -> _Schema:
    return {(info.alias or name): _nested_model(info.annotation) for name, info in model.model_fields.items()}


def _nested_model(annotation: Any) -> tuple[bool, type[BaseModel]] | None:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _nested_model(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        return _nested_model(members[0]) if len(members) == 1 else None
    if origin is list:
        inner = _nested_model(get_args(annotation)[0])
        return (True, inner[1]) if inner and not inner[0] else None
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return False, annotation
    return None
