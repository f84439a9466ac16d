"""camtrap_ssl: when do self-supervised representations transfer better than supervised ones?

The package behind the book: an embedded synthetic camera-trap world (:mod:`camtrap_ssl.data.synthetic`),
the backbones (:mod:`camtrap_ssl.models`), pretraining and fine-tuning loops, and the analyses of
the four studies. See ARCHITECTURE.md for the contracts between modules.
"""
__version__ = "0.1.0"
