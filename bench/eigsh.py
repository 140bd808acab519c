"""Benchmark: the k most negative Hessian eigenpairs, ours against ARPACK and dense eigh.

Prints two tables (and, with --json FILE, writes the rows):
1. eigensolvers on the same HVP operator and the same tolerance (max residual <= 1e-6 ||H||,
   float64): products, wall seconds, max relative residual, multiplicities right;
2. the cost of one Hessian-vector product over one gradient, for MLPs of ~1k, 50k and 500k
   parameters, for both autodiff modes and for blocks of 8.

Run: `python bench/eigsh.py` (add `--device cuda` on a GPU machine; `--quick` for a smoke run).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, astuple, dataclass

import numpy as np
import scipy.sparse.linalg as sla
import torch
from common import markdown_row, print_table, samples, timed
from threadpoolctl import threadpool_limits
from torch.func import grad
from torch.nn import functional as F

from ridgerider.flat import module_loss
from ridgerider.linalg import HessianOperator, eigsh
from ridgerider.problems.digits import digits_loss, digits_mlp, digits_split
from ridgerider.problems.invariant import maximally_invariant_point

RESIDUAL_TOL = 1e-6  # relative to ||H||, for every solver
DENSE_MAX_N = 3000
CELLS = ("<36", ">6", ">2", "<19", ">8", ">8.3f", ">9.1e", ">5")  # a Row's, padded to the table
HVP_MODELS = {"~1k": [14], "~50k": [700], "~500k": [640, 640]}  # hidden widths


@dataclass
class Row:
    problem: str
    n: int
    k: int
    solver: str
    products: int | None
    seconds: float
    max_rel_residual: float
    multiplicity_ok: str

    def cells(self) -> list[str]:
        """The table's cells ("-" where no products are counted)."""
        return [
            format("-" if v is None else v, f) for v, f in zip(astuple(self), CELLS, strict=True)
        ]


def _problems(device: torch.device, quick: bool):
    """(name, loss on `device`, point on `device`) for each problem of the solver table."""
    data = digits_split(dtype=torch.float64)
    on_device = data.to(device)
    widths = [16] if quick else [16, 32]
    for hidden in widths:
        model = digits_mlp(hidden)
        saddle = maximally_invariant_point(model, digits_loss(model, data))
        loss = digits_loss(digits_mlp(hidden).to(device), on_device)
        yield f"digits 64-{hidden}-10 symmetric saddle", loss, saddle.to(device)
    for hidden in [widths[-1]] if quick else [widths[-1], 1333]:  # 1333: 99,985 parameters
        torch.manual_seed(0)
        model = digits_mlp(hidden).to(device)
        theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        yield f"digits 64-{hidden}-10 random point", digits_loss(model, on_device), theta


def _true_residuals(op: HessianOperator, values: torch.Tensor, vectors: torch.Tensor) -> float:
    check = HessianOperator(op.loss, op.theta)
    products = check.matmat(vectors)
    return torch.linalg.vector_norm(products - vectors * values.to(vectors), dim=0).max().item()


def _multiplicity_ok(values: torch.Tensor, reference: torch.Tensor | None, hnorm: float) -> str:
    if reference is None:
        return "n/a"
    close = (values.cpu().sort().values - reference[: values.numel()]).abs().max().item()
    return "yes" if close <= 1e-5 * hnorm else "NO"


def _solve_arpack(op: HessianOperator, k: int, hnorm: float, reference: torch.Tensor):
    counter = {"products": 0}

    def matvec(x: np.ndarray) -> np.ndarray:
        counter["products"] += 1
        v = torch.as_tensor(x.reshape(-1), dtype=op.dtype, device=op.device)
        return op.matvec(v).cpu().numpy()

    n = op.shape[0]
    linear = sla.LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    # ARPACK's test is ||r_i|| <= tol |theta_i|; this tol gives it all the slack 1e-6 ||H|| allows.
    tol = RESIDUAL_TOL * hnorm / reference[:k].abs().max().item()
    v0 = np.random.default_rng(0).standard_normal(n)
    start = time.perf_counter()
    # scipy's BLAS threads spin between products and starve torch's: one BLAS thread is faster.
    with threadpool_limits(1, user_api="blas"):
        values, vectors = sla.eigsh(linear, k=k, which="SA", tol=tol, v0=v0, maxiter=100_000)
    seconds = time.perf_counter() - start
    vectors_t = torch.as_tensor(vectors, dtype=op.dtype, device=op.device)
    return torch.as_tensor(values), vectors_t, counter["products"], seconds


def _solve_dense(op: HessianOperator, k: int):
    start = time.perf_counter()
    dense = torch.func.hessian(op.loss)(op.theta)
    values, vectors = torch.linalg.eigh(dense)
    if op.device.type == "cuda":
        torch.cuda.synchronize()
    return values[:k], vectors[:, :k], None, time.perf_counter() - start


def eigensolver_rows(device: torch.device, quick: bool) -> list[Row]:
    rows = []
    for name, loss, theta in _problems(device, quick):
        n = theta.numel()
        op = HessianOperator(loss, theta)
        op.matvec(torch.zeros_like(theta))  # build the reused graph outside the timings
        spectrum = None
        if n <= DENSE_MAX_N:
            spectrum = torch.linalg.eigvalsh(torch.func.hessian(loss)(theta)).cpu()
            hnorm = spectrum.abs().max().item()
        else:  # the positive end dominates ||H||; the negative end is checked below
            hnorm = eigsh(op, 1, "LA", tol=1e-8).eigenvalues[0].item()
        for k in (1, 8):
            ours = timed(eigsh, op, k, "SA", tol=RESIDUAL_TOL)
            values, vectors, info = ours.value
            hnorm = max(hnorm, values.abs().max().item())
            reference = spectrum if spectrum is not None else values.cpu()
            results = {
                "ridgerider.eigsh": (values, vectors, info.matvecs, ours.seconds),
                "scipy ARPACK": _solve_arpack(op, k, hnorm, reference),
            }
            if n <= DENSE_MAX_N:
                results["dense hessian+eigh"] = _solve_dense(op, k)
            for solver, (values, vectors, products, seconds) in results.items():
                residual = _true_residuals(op, values, vectors) / hnorm
                multiplicity = _multiplicity_ok(values, spectrum, hnorm)
                rows.append(Row(name, n, k, solver, products, seconds, residual, multiplicity))
                print(markdown_row(rows[-1].cells()), file=sys.stderr, flush=True)
    return rows


def _hvp_times(hidden: list[int], batches: list, device: torch.device, repeats: int) -> dict:
    """An MLP's size and gradient time, and each way of computing its HVPs over that time."""
    layers: list[torch.nn.Module] = []
    for fan_in, fan_out in itertools.pairwise([64, *hidden, 10]):
        layers += [torch.nn.Linear(fan_in, fan_out), torch.nn.Tanh()]
    model = torch.nn.Sequential(*layers[:-1]).to(device)
    loss, theta = module_loss(model, F.cross_entropy, batches)
    n = theta.numel()
    v = torch.randn(n, device=device)
    V = torch.randn(n, 8, device=device)

    def median(fn: Callable[[], object]) -> float:
        return statistics.median(samples(fn, repeats, device))

    gradient = median(lambda: grad(loss)(theta))
    row = {"n": n, "gradient_ms": 1e3 * gradient}
    for mode in ("reverse-over-reverse", "forward-over-reverse"):
        fresh = lambda mode=mode: HessianOperator(loss, theta, mode=mode).matvec(v)  # noqa: E731
        row[f"{mode} first"] = median(fresh) / gradient
        op = HessianOperator(loss, theta, mode=mode)
        row[f"{mode} reused"] = median(lambda op=op: op.matvec(v)) / gradient
    for batching in ("vmap", "loop"):
        op = HessianOperator(loss, theta, batching=batching)
        row[f"block of 8, {batching}, per product"] = (
            median(lambda op=op: op.matmat(V)) / 8 / gradient
        )
    return row


def hvp_rows(device: torch.device, quick: bool) -> list[dict]:
    data = digits_split(dtype=torch.float32)
    batches = [(data.x_train.to(device), data.y_train.to(device))]
    rows = []
    for label, hidden in list(HVP_MODELS.items())[: 2 if quick else 3]:
        rows.append({"model": label, **_hvp_times(hidden, batches, device, 5 if quick else 20)})
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="smaller problems, fewer repeats")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"# bench/eigsh.py on {name}, torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads; tolerance: max residual <= {RESIDUAL_TOL:g} ||H||, float64\n"
    )
    solver_rows = eigensolver_rows(device, args.quick)
    header = ["problem", "n", "k", "solver", "products", "seconds", "max res/||H||", "mult ok"]
    print_table(header, "lrrlrrrr", (row.cells() for row in solver_rows))
    print()
    hvp = hvp_rows(device, args.quick)
    columns = [c for c in hvp[0] if c not in ("model", "n", "gradient_ms")]
    print("One HVP's time over one gradient's time (float32, digits batch of 1347; median)\n")
    print_table(
        ["model", "n", "gradient ms", *columns],
        "lrr" + "r" * len(columns),
        (
            [row["model"], row["n"], f"{row['gradient_ms']:.2f}"]
            + [f"{row[c]:.2f}x" for c in columns]
            for row in hvp
        ),
    )
    if device.type != "cuda":
        print("\nCUDA rows: not applicable (no CUDA device here; run with --device cuda on one).")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"solvers": [asdict(r) for r in solver_rows], "hvp": hvp}, handle, indent=1)


if __name__ == "__main__":
    main()
