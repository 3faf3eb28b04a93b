"""Metrics: sample quality (FD in a small classifier's features, with its real-vs-real floor) and
likelihood (bits/dim from the ELBO). classifier.py <- fd.py; likelihood.py stands alone.
"""
from .classifier import FeatureNet, build_classifier, classify, feature_classifier, image_features, train_classifier
from .fd import fd_with_floor, frechet_distance
from .likelihood import bits_per_dim_of

__all__ = ["FeatureNet", "build_classifier", "classify", "feature_classifier", "image_features", "train_classifier",
           "fd_with_floor", "frechet_distance", "bits_per_dim_of"]
