"""Layer 3: pretraining the embedded backbones (methods with their own hooks, views, loop, probes)."""
