"""Out-of-core customer segmentation on Dask: clean, encode, PCA, k-means, compare, describe, report."""

__version__ = "0.1.0"
