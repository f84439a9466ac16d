"""Layer 3: fine-tuning (the loop, augmentation, metrics, data-parallel primitives, run directories)."""
