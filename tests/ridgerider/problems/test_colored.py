"""The colored-digits problem's environments."""

from __future__ import annotations

import pytest
import torch

from ridgerider.problems.colored import colored_digits_problem, colored_split


def colour_agreement(inputs: torch.Tensor, labels: torch.Tensor) -> float:
    return (inputs[:, 64:].argmax(1) == labels).double().mean().item()


def test_colour_agrees_with_the_label_in_training_and_not_out_of_distribution():
    data, (ood_inputs, ood_labels) = colored_split(agreement=0.9)
    assert data.x_train.shape[1] == 74
    assert (data.x_train[:, 64:].sum(1) == 1).all()
    assert colour_agreement(data.x_train, data.y_train) == pytest.approx(0.91, abs=0.03)
    assert colour_agreement(data.x_test, data.y_test) == pytest.approx(0.91, abs=0.04)
    assert colour_agreement(ood_inputs, ood_labels) < 0.2
    assert torch.equal(ood_inputs[:, :64], data.x_test[:, :64])


def test_problem_starts_at_a_critical_point_and_measures_ood():
    problem = colored_digits_problem(hidden=4)
    assert problem.name == "colored-digits-74-4-10-tanh"
    assert problem.dim == 75 * 4 + 10 + 40
    assert torch.func.grad(problem.loss)(problem.start).norm() < 1e-12
    assert set(problem.splits) == {"train", "test", "ood"}
    with pytest.raises(ValueError, match=r"agreement must be a number in \[0.1, 1\]"):
        colored_digits_problem(agreement=1.5)
