"""Layer 4: runs by name (backbone resolution, run policy, grids of runs, the torchrun launcher)."""
