"""Layer 1: images and labels, from the embedded world or the study's real datasets.

COCO Camera Traps reading and splits (:mod:`.cct`), LILA downloads (:mod:`.lila`), the resize-once
cache (:mod:`.prepare`), CIFAR (:mod:`.cifar`), image folders (:mod:`.images`), the embedded
synthetic world (:mod:`.synthetic`) and every fine-tuning target by name (:mod:`.targets`).
"""
