"""Readable config errors: key paths, nearest valid key, expected types (also in unions)."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Literal

from pydantic import BaseModel


def describe_error(err: dict[str, Any], root: type[BaseModel]) -> str:
    """One line for one pydantic error of a config rooted at ``root``."""
    loc = [str(p) for p in err["loc"]]
    shown = _without_tags(root, loc)  # pydantic adds the union member's tag, e.g. model.smp-unet.encoder
    key = ".".join(shown) or "<top level>"
    if err["type"] == "extra_forbidden":
        fields = _fields_at(root, loc[:-1])
        hint = difflib.get_close_matches(loc[-1], fields, n=1, cutoff=0.5)
        parent = ".".join(shown[:-1])
        suggestion = f"; did you mean '{'.'.join([*shown[:-1], hint[0]])}'?" if hint else ""
        valid = f" (valid keys{' in ' + parent if parent else ''}: {', '.join(fields)})"
        return f"unknown key '{key}'{suggestion}{valid}"
    expected = _expected_type(root, loc)
    got = err.get("input")
    got_text = "" if err["type"] == "missing" else f", got {got!r}"
    exp_text = f" (expected {expected})" if expected else ""
    return f"{key}: {err['msg']}{exp_text}{got_text}"


def _walk(root: type[BaseModel], loc: list[str]) -> tuple[Any, type[BaseModel] | None, list[str]]:
    """Follow ``loc`` from ``root``: (field info, section class there, loc without union tags).

    A tagged-union field (``model``) is followed into the member its tag in ``loc`` names.
    """
    model: type[BaseModel] | None = root
    info = None
    tags: dict[str, type[BaseModel]] = {}
    shown: list[str] = []
    for i, part in enumerate(loc):
        if part in tags:
            model, tags = tags[part], {}
            continue
        shown.append(part)
        if part.isdigit() and info is not None:  # an index into a list of sections
            continue
        if model is None or part not in model.model_fields:
            return None, None, shown + loc[i + 1 :]
        info = model.model_fields[part]
        tags = union_members(info.annotation)
        model = _submodel(info.annotation)
    return info, model, shown


def _field_info(root: type[BaseModel], loc: list[str]):
    return _walk(root, loc)[0]


def _without_tags(root: type[BaseModel], loc: list[str]) -> list[str]:
    return _walk(root, loc)[2]


def union_members(annotation: Any) -> dict[str, type[BaseModel]]:
    """Tag -> section of a union of sections told apart by a ``Literal`` ``name``."""
    members: dict[str, type[BaseModel]] = {}
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel) and "name" in arg.model_fields:
            tag = arg.model_fields["name"].annotation
            if typing.get_origin(tag) is Literal:
                members.update(dict.fromkeys(typing.get_args(tag), arg))
    return members if len(members) > 1 else {}


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The section class inside ``annotation`` (also through ``X | None`` and ``list[X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _submodel(arg)
        if found is not None:
            return found
    return None


def _fields_at(root: type[BaseModel], loc: list[str]) -> list[str]:
    if not loc:
        return list(root.model_fields)
    model = _walk(root, loc)[1]
    return list(model.model_fields) if model else []


def _expected_type(root: type[BaseModel], loc: list[str]) -> str | None:
    info = _field_info(root, loc)
    if info is not None and union_members(info.annotation):  # pydantic's message lists the tags
        return None
    return _type_name(info.annotation) if info is not None else None


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))
