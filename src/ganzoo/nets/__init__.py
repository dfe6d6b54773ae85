"""Building blocks shared by the variants: MLP, DCGAN G/D, and (translation) U-Net, ResNet G, PatchGAN."""
