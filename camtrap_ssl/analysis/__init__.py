"""Layer 5: the measures of Studies 3 and 4 and the explorers. Works on any model and images;
knows nothing of runs or notebooks.

Study 3: ``transforms`` (the study's grids), ``class_selection``, ``invariance`` (prediction curves,
representation invariance), ``invariance_plots``, ``equivariance`` (learned M_g per block).
Study 4: ``filters``, ``featvis``, ``attribution`` (saliency, Score-CAM variants), ``sanity``
(parameter randomisation), ``localisation`` (Quantus metrics, deletion AUC), ``backgrounds``
(background swaps, masks, bootstrap intervals), ``explorer``."""
