"""Evaluation: how good are samples, and is a difference real?

    lowdim        squared MMD (decides) and sliced Wasserstein (intuition) for 2D data, their
                  data-vs-data floor, and the fidelity of labelled 2D samples
    images        the FID on a classifier's or Inception's features, its floor, and what the
                  set's classifier makes of samples (confidence, class accuracy)
    neighbours    the nearest-training-neighbour check (memorisation) that tells a copier from a model
    classifier    the image classifier those metrics read (shipped for the digits)
    compare       the one comparison rule (``verdict``) and a score beside its floor
"""
from .compare import VERDICTS, verdict, with_floor
from .images import (FID_FEATURES, class_accuracy, classifier_confidence, classifier_features, confident_fraction,
                     digits_features, digits_fid, digits_fid_floor, draw_indices, fid_features, fid_from_features,
                     forget_references, frechet_distance, gaussian_fit, image_fid, image_fid_floor, inception_fid,
                     split_features)
from .lowdim import BANDWIDTHS, MMDReference, class_fidelity, floor, mmd_rbf, sliced_wasserstein
from .neighbours import memorisation, nearest_neighbour_distances
