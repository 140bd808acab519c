"""`/problems`: the registered problems a job may name, and their parameters with ranges."""

from __future__ import annotations

import inspect

from fastapi import APIRouter

from api.deps import OwnerDep
from api.schemas import ParameterInfo, ProblemInfo
from ridgerider.problems.parameters import declared, defaults
from ridgerider.problems.registry import registered

router = APIRouter(tags=["problems"])


@router.get("/problems", response_model=list[ProblemInfo])
def problems(_: OwnerDep) -> list[ProblemInfo]:
    """Every registered problem (`name:key=value,...`) with its parameters: kind, default and
    allowed values (a factory that declares none lists its defaults only)."""
    listed = []
    for name, factory in sorted(registered().items()):
        schema = declared(factory) or {}
        parameters = {
            key: ParameterInfo(**schema[key].as_json(default))
            if key in schema
            else ParameterInfo(default=default)
            for key, default in defaults(factory).items()
        }
        doc = (inspect.getdoc(factory) or "").split("\n\n")[0]
        listed.append(ProblemInfo(name=name, parameters=parameters, doc=doc))
    return listed
