"""What the translation variants share: the direction check, and the two-generator /
two-discriminator layout of CycleGAN and DiscoGAN."""

from __future__ import annotations

import itertools
from typing import ClassVar

import torch

from ganzoo.errors import ConfigError
from ganzoo.nets.translation import init_normal
from ganzoo.variants.base import Variant

DIRECTIONS = ("AtoB", "BtoA")


def check_direction(variant: Variant, direction: str) -> None:
    """ConfigError unless `variant` can translate in `direction`."""
    if direction not in DIRECTIONS:
        raise ConfigError(f"direction {direction!r} is unknown; use AtoB or BtoA")
    if direction not in variant.directions:
        raise ConfigError(f"{variant.name} learns one mapping, input -> target of the data.direction it was "
                          f"trained with, so it cannot translate {direction}; use --direction AtoB, or train "
                          f"another model with the other data.direction (or cyclegan/discogan, which learn both ways)")


class TwoWayTranslator(Variant):
    """Nets g_ab (A->B), g_ba (B->A), d_a (judges A), d_b (judges B); optimizers g and d."""

    data_kind = "unpaired"  # paired sources train it too: the pairing is simply not used
    translates = True
    directions: ClassVar[tuple[str, ...]] = DIRECTIONS
    default_source: ClassVar[str] = "digits_unpaired"  # the embedded offline task these variants default to

    def channels(self) -> tuple[int, int]:
        return self.data.image_shape[0], (self.data.image_shape_b or self.data.image_shape)[0]

    def build_optimizers(self) -> None:
        for net in self.nets.values():
            init_normal(net)
        n = self.nets
        self.optims = {"g": self.adam(itertools.chain(n["g_ab"].parameters(), n["g_ba"].parameters()), "g"),
                       "d": self.adam(itertools.chain(n["d_a"].parameters(), n["d_b"].parameters()), "d")}

    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str = "AtoB", seed: int = 0) -> torch.Tensor:
        """Deterministic: these papers add no test-time noise. `seed` is accepted (and unused)
        so that every translator takes pix2pix's call."""
        check_direction(self, direction)
        return self.nets["g_ab" if direction == "AtoB" else "g_ba"](x)
