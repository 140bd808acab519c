"""`/problems`: the registered problems a job may name, and their parameters."""

from __future__ import annotations

import inspect

from fastapi import APIRouter

from api.deps import OwnerDep
from api.schemas import ProblemInfo
from ridgerider.problems.registry import registered

router = APIRouter(tags=["problems"])


@router.get("/problems", response_model=list[ProblemInfo])
def problems(_: OwnerDep) -> list[ProblemInfo]:
    """Every registered problem with its parameters' defaults (`name:key=value,...`)."""
    listed = []
    for name, factory in sorted(registered().items()):
        parameters = {
            p.name: None if p.default is inspect.Parameter.empty else p.default
            for p in inspect.signature(factory).parameters.values()
        }
        doc = (inspect.getdoc(factory) or "").split("\n\n")[0]
        listed.append(ProblemInfo(name=name, parameters=parameters, doc=doc))
    return listed
