"""The overlap losses and the pairs document their own arguments, in the same words.

``help()`` and the API pages show a loss's docstring alone, so each one lists every argument of its
signature instead of pointing at another loss. The options the members share are described by the
Dice loss of the same frontend (its function and its class agree); every other member must use the
same words, so that a change to one description is made to all.
"""

from __future__ import annotations

import inspect
import re

import pytest

# Options whose meaning is the member's own (the ratio under log_loss, the norm under squared, the
# Tversky and focal weights), the overlap term's classes in a pair, the pairs' own words for their
# inputs, and the options a Keras function takes as **options (it names them).
OWN_WORDS = {
    "squared",
    "log_loss",
    "alpha",
    "beta",
    "gamma",
    "classes",
    "input",
    "target",
    "y_true",
    "y_pred",
    "weight",
    "options",
}

# The generalized Dice multiplies its own weights by the class weights.
OWN_WORDS_OF = {name: {"class_weights"} for name in ("generalized_dice_loss", "GeneralizedDiceLoss")}

TORCH_MEMBERS = ("dice", "jaccard", "tversky", "focal_tversky", "generalized_dice", "dice_ce", "dice_focal")
CLASS_NAMES = {
    "dice": "DiceLoss",
    "jaccard": "JaccardLoss",
    "tversky": "TverskyLoss",
    "focal_tversky": "FocalTverskyLoss",
    "generalized_dice": "GeneralizedDiceLoss",
    "dice_ce": "DiceCELoss",
    "dice_focal": "DiceFocalLoss",
}


def documented_arguments(obj: object) -> dict[str, str]:
    """The Args section of ``obj``'s docstring: name -> description, whitespace collapsed."""
    doc = inspect.getdoc(obj) or ""
    match = re.search(r"^Args:\n((?:    .*\n?|\n(?=    ))+)", doc, re.MULTILINE)
    if match is None:
        return {}
    arguments: dict[str, list[str]] = {}
    name = ""
    for line in match.group(1).splitlines():
        entry = re.match(r"^    (\*{0,2}\w+): (.*)$", line)
        if entry:
            name = entry.group(1).lstrip("*")
            arguments[name] = [entry.group(2)]
        elif line.strip():
            arguments[name].append(line.strip())
    return {key: " ".join(words) for key, words in arguments.items()}


def signature_arguments(obj: object) -> list[str]:
    function = obj.__init__ if isinstance(obj, type) else obj
    return [name for name in inspect.signature(function).parameters if name != "self"]


def members(frontend: str) -> list[object]:
    if frontend == "torch":
        pytest.importorskip("torch")
        import losses.torch as module
        import losses.torch.functional as functional
    else:
        pytest.importorskip("keras")
        import losses.keras as module

        functional = module
    found = []
    for member in TORCH_MEMBERS:
        found += [getattr(functional, f"{member}_loss"), getattr(module, CLASS_NAMES[member])]
    return found


@pytest.mark.parametrize("frontend", ["torch", "keras"])
def test_every_argument_is_documented_by_its_own_loss(frontend: str) -> None:
    for obj in members(frontend):
        documented = documented_arguments(obj)
        missing = [name for name in signature_arguments(obj) if name not in documented]
        assert not missing, f"{obj.__module__}.{obj.__qualname__} does not document {missing}"
        unknown = sorted(set(documented) - set(signature_arguments(obj)))
        assert not unknown, f"{obj.__module__}.{obj.__qualname__} documents {unknown}, not in its signature"


@pytest.mark.parametrize("frontend", ["torch", "keras"])
def test_shared_options_read_as_the_dice_loss_describes_them(frontend: str) -> None:
    found = members(frontend)
    dice_function, dice_class = documented_arguments(found[0]), documented_arguments(found[1])
    reference = {**dice_function, **dice_class}
    differ = [
        f"dice_loss and DiceLoss describe {name!r} differently"
        for name in sorted(set(dice_function) & set(dice_class) - OWN_WORDS)
        if dice_function[name] != dice_class[name]
    ]
    for obj in found[2:]:
        own = OWN_WORDS | OWN_WORDS_OF.get(obj.__name__, set())
        differ += [
            f"{obj.__module__}.{obj.__qualname__} describes {name!r} otherwise than the Dice loss:\n"
            f"  {words}\n  {reference[name]}"
            for name, words in documented_arguments(obj).items()
            if name in reference and name not in own and words != reference[name]
        ]
    assert not differ, "\n".join(differ)


def test_a_wrong_description_is_found() -> None:
    """Negative control: the parser reads the entries, so a changed word would be seen."""

    def loss(input: object, mode: str = "multiclass") -> None:
        """A loss.

        Args:
            input: the prediction,
                over two lines.
            mode: ``"binary"``.

        Returns:
            Nothing.
        """

    assert documented_arguments(loss) == {"input": "the prediction, over two lines.", "mode": '``"binary"``.'}
    assert documented_arguments(lambda: None) == {}
