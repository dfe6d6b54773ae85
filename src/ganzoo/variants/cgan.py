"""CGAN (Mirza & Osindero 2014) in DCGAN form: the class label y conditions both networks, as a
learned embedding concatenated to z in G and as one-hot label maps concatenated to x in D.
BCE loss with the non-saturating G loss, Adam 2e-4 (0.5, 0.999), N(0, 0.02) init. z is uniform, as
in the paper ("drawn from a uniform distribution within the unit hypercube"); here Uniform(-1, 1),
the DCGAN form's range: an affine change of z that G's first layer absorbs.

Fake images are conditioned on the labels of the real batch, so the fakes' label distribution
is the data's. `sample(labels=...)` generates the given classes; without labels the classes are
drawn uniformly from the passed generator."""

from __future__ import annotations

import torch
from pydantic import Field

from ganzoo.errors import ConfigError
from ganzoo.losses import d_loss, g_loss
from ganzoo.nets.blocks import init_dcgan_weights
from ganzoo.nets.conditional import ConditionalDiscriminator, ConditionalGenerator
from ganzoo.variants.base import Alternating, HParams


class CGANParams(HParams):
    z_dim: int = Field(100, ge=1)
    # As wide as the one-hot code: a wider N(0, 1) embedding outweighed z in G's input and
    # collapsed each class to one image in our MNIST runs.
    embed_dim: int = Field(10, ge=1)
    ngf: int = Field(64, ge=4)
    ndf: int = Field(64, ge=4)


class CGAN(Alternating):
    name = "cgan"
    description = "class-conditional DCGAN: label embedding joined to z in G, one-hot label planes joined to x in D"
    data_kind = "labelled"
    HParams = CGANParams
    takes_labels = True
    uniform_noise = True  # the paper's uniform prior (see the module docstring)

    @property
    def num_classes(self) -> int:
        if not self.data.num_classes:
            raise ConfigError("cgan needs labelled data (data.num_classes is unknown); "
                              "use data.source=digits, mnist, cifar10 or a folder with class sub-folders")
        return self.data.num_classes

    def build(self) -> None:
        hp = self.hp
        c, s, _ = self.data.image_shape
        self.nets = {"g": ConditionalGenerator(hp.z_dim, self.num_classes, s, c, hp.ngf, hp.embed_dim),
                     "d": ConditionalDiscriminator(s, c, self.num_classes, hp.ndf)}
        for net in self.nets.values():
            init_dcgan_weights(net)
        self.optims = {k: self.adam(v.parameters(), k) for k, v in self.nets.items()}

    def d_step(self, batch):
        g, d = self.nets["g"], self.nets["d"]
        x, y = batch["x"], batch["y"]
        with torch.no_grad():
            fake = g(self.noise(x.shape[0], self.hp.z_dim), y)
        loss = d_loss("bce", d(x, y), d(fake, y))
        self.step(self.optims["d"], loss)
        return {"loss_d": loss.detach()}

    def g_step(self, batch):
        g, d = self.nets["g"], self.nets["d"]
        y = batch["y"]
        with self.frozen(d):
            loss = g_loss("bce", d(g(self.noise(y.shape[0], self.hp.z_dim), y), y))
        self.step(self.optims["g"], loss)
        return {"loss_g": loss.detach()}

    @property
    def latent_dim(self) -> int:
        return self.hp.z_dim

    def decode(self, z, labels=None, codes=None, generator=None):
        n = z.shape[0]
        if labels is None:
            labels = torch.randint(self.num_classes, (n,), device=self.device, generator=generator)
        else:
            labels = torch.as_tensor(labels, dtype=torch.long, device=self.device).flatten()
            if labels.numel() != n:
                raise ConfigError(f"cgan: {labels.numel()} labels for {n} samples; give one label per sample")
            if labels.numel() and not (0 <= int(labels.min()) and int(labels.max()) < self.num_classes):
                raise ConfigError(f"cgan: labels must lie in 0..{self.num_classes - 1}")
        return self.nets["g"](z, labels)
