"""Image pretext tasks, one module per method: SimCLR, MoCo v3, BYOL, DINO, Barlow Twins, VICReg, SwAV,
MAE, DeepCluster (``siamese`` holds the two-view helpers they share).

Imports nothing: ``options`` is torch-free, the other modules are imported by the factories."""
