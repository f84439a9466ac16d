"""The embedded, offline world (SPEC section 6): procedural stand-ins for ImageNet, CIFAR and the
LILA camera-trap datasets, deterministic in their seed and cached on disk.

* :func:`source_world`: labelled source world (ImageNet stand-in), arrays.
* :func:`similar_world`: CIFAR-10 stand-in, 32 x 32 arrays.
* :func:`write_camtrap_world` / :func:`camtrap_world`: Serengeti and ENA24 stand-ins as JPEGs plus
  a COCO Camera Traps JSON; :func:`family_spec`, the Serengeti stand-in at a controlled distance
  from the source world (RQ1).
* :func:`gallery`: a figure of examples.
"""
from .camtrap import (
                      FAMILY_DISTANCES,
                      FAMILY_STEPS,
                      camtrap_world,
                      class_frequencies,
                      family_spec,
                      plan_sequences,
                      sequence_counts,
                      write_camtrap_world,
)
from .camtrap import SPECS as CAMTRAP_SPECS
from .gallery import family_gallery, gallery
from .worlds import (
                      GENERATOR_VERSION,
                      SIMILAR_CLASSES,
                      SOURCE_CLASSES,
                      World,
                      default_cache_dir,
                      similar_world,
                      source_world,
)

__all__ = ["CAMTRAP_SPECS", "FAMILY_DISTANCES", "FAMILY_STEPS", "family_spec", "GENERATOR_VERSION", "SIMILAR_CLASSES", "SOURCE_CLASSES", "World",
           "camtrap_world", "class_frequencies", "default_cache_dir", "family_gallery", "gallery", "plan_sequences",
           "sequence_counts", "similar_world", "source_world", "write_camtrap_world"]
