"""ganzoo: every classic GAN, trained, judged, versioned and served."""

__version__ = "0.1.0"
