"""Layer 5: the measures of Studies 3 and 4 (invariance, equivariance, filters, feature
visualisation, attribution, backgrounds) and the explorers. Works on any model and images; knows
nothing of runs or notebooks."""
