"""The template of docs/adding_a_variant.md: a complete variant in a few lines. The tests register
it (`registry.REGISTRY["example"] = "tests.example_variant:Example"`) and run the same contract
checks as on the real variants: registration alone is what gets a variant tested."""

from __future__ import annotations

from pydantic import Field

from ganzoo.losses import d_loss, g_loss
from ganzoo.nets.blocks import MLPDiscriminator, MLPGenerator
from ganzoo.variants.base import Alternating, HParams


class ExampleParams(HParams):  # the paper's defaults; params.yaml's model.example overrides them
    z_dim: int = Field(16, ge=1)
    hidden: int = Field(32, ge=8)


class Example(Alternating):  # Alternating: one d_step, then one g_step, per batch
    name = "example"
    description = "template: MLP nets, BCE, one D step then one G step"
    HParams = ExampleParams

    def build(self) -> None:
        shape = self.data.image_shape
        self.nets = {"g": MLPGenerator(self.hp.z_dim, shape, self.hp.hidden),
                     "d": MLPDiscriminator(shape, self.hp.hidden, 0.0)}
        self.optims = {k: self.adam(net.parameters(), k) for k, net in self.nets.items()}

    @property
    def latent_dim(self) -> int:  # declaring it gives sampling, serving and interpolation sheets
        return self.hp.z_dim

    def decode(self, z, labels=None, codes=None, generator=None):
        return self.nets["g"](z)

    def d_step(self, batch):
        real = batch["x"]
        fake = self.sample(real.shape[0]).detach()
        loss = d_loss("bce", self.nets["d"](real), self.nets["d"](fake))
        self.step(self.optims["d"], loss)
        return {"loss_d": loss.detach()}

    def g_step(self, batch):
        with self.frozen(self.nets["d"]):
            loss = g_loss("bce", self.nets["d"](self.sample(batch["x"].shape[0])))
        self.step(self.optims["g"], loss)
        return {"loss_g": loss.detach()}
