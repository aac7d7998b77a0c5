"""A griffe extension that gives equinox modules their constructor signatures.

An `eqx.Module` is a dataclass made by a metaclass, so griffe's static analysis (which
recognises the `@dataclass` decorator only) sees no `__init__` and the API reference
would show `Iterative` or `ENGD` without their arguments. For every concrete module
of the documented package that defines no `__init__` of its own, this extension
builds one from the annotated fields along its bases, as dataclasses do: fields in
order of definition, parents first, a redefined field keeping its first position;
`eqx.field(default=...)` and `eqx.field(default_factory=...)` give the default;
`eqx.AbstractVar`, `eqx.AbstractClassVar` and `ClassVar` annotations are not
arguments.
"""

from typing import Any

import griffe


# Bases outside the documented package that make a class an equinox module.
_EQUINOX_ROOTS = {
    "equinox.Module",
    "lineax.AbstractLinearOperator",
    "lineax.AbstractLinearSolver",
}
_NOT_FIELDS = ("AbstractVar", "AbstractClassVar", "ClassVar")


def _base_path(base: Any) -> str:
    if isinstance(base, griffe.ExprSubscript):
        base = base.left
    return getattr(base, "canonical_path", str(base))


def _is_equinox_module(cls: griffe.Class) -> bool:
    try:
        lineage = [cls, *cls.mro()]
    except ValueError:
        lineage = [cls]
    return any(_base_path(base) in _EQUINOX_ROOTS for c in lineage for base in c.bases)


def _is_field(attribute: griffe.Attribute) -> bool:
    if attribute.annotation is None or attribute.name.startswith("__"):
        return False
    if "property" in attribute.labels:
        return False
    if "instance-attribute" not in attribute.labels:
        return False  # griffe labels ClassVar annotations as class attributes only
    annotation = attribute.annotation
    if isinstance(annotation, griffe.ExprSubscript):
        annotation = annotation.left
    return str(annotation).split(".")[-1] not in _NOT_FIELDS


def _field_default(attribute: griffe.Attribute) -> Any:
    value = attribute.value
    if isinstance(value, griffe.ExprCall) and value.canonical_path in (
        "equinox.field",
        "dataclasses.field",
    ):
        for argument in value.arguments:
            if isinstance(argument, griffe.ExprKeyword):
                if argument.name == "default":
                    return argument.value
                if argument.name == "default_factory":
                    return griffe.ExprCall(argument.value, [])
        return None
    return value


def _synthesise_init(cls: griffe.Class) -> None:
    try:
        lineage = [*reversed(cls.mro()), cls]
    except ValueError:
        lineage = [cls]
    fields: dict[str, griffe.Parameter] = {}
    for owner in lineage:
        for member in owner.members.values():
            if member.is_alias or not member.is_attribute or not _is_field(member):
                continue
            fields[member.name] = griffe.Parameter(
                member.name,
                annotation=member.annotation,
                kind=griffe.ParameterKind.positional_or_keyword,
                default=_field_default(member),
            )
    init = griffe.Function(
        "__init__",
        lineno=0,
        endlineno=0,
        parent=cls,
        parameters=griffe.Parameters(
            griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword),
            *fields.values(),
        ),
        returns="None",
    )
    cls.set_member("__init__", init)


def _visit(obj: griffe.Object, seen: set[str]) -> None:
    if obj.path in seen:
        return
    seen.add(obj.path)
    for member in list(obj.members.values()):
        if member.is_alias:
            continue
        if member.is_class:
            if (
                "__init__" not in member.members
                and not member.name.startswith("Abstract")
                and _is_equinox_module(member)
            ):
                _synthesise_init(member)
            _visit(member, seen)
        elif member.is_module:
            _visit(member, seen)


class EquinoxModules(griffe.Extension):
    """Adds the dataclass `__init__` of equinox modules (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        _visit(pkg, set())
