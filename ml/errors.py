"""Errors of the churn model. Each names the problem; none of them changes the registry's champion."""

from __future__ import annotations


class ModelError(RuntimeError):
    """Base class: the model cannot be trained, promoted, loaded or used for scoring."""


class EmptyTrainingWindowError(ModelError):
    """No (or too few) labelled rows / as-of dates to train, calibrate and validate on."""


class SingleClassError(ModelError):
    """A window holds only churners or only non-churners: nothing to learn or measure."""


class MissingFeatureError(ModelError):
    """The input table lacks feature (or key/label) columns the model needs."""


class AllNullFeatureError(ModelError):
    """A feature column is null on every row of the input: the upstream model is broken."""


class FeatureMismatchError(ModelError):
    """The champion was trained on a different feature set than the one offered for scoring."""


class NoChampionError(ModelError):
    """Scoring or rollback needs a champion (or a previous one) and the registry has none."""


class ArtefactError(ModelError):
    """A model file is missing, its sha256 differs from the registry, or it holds untrusted types."""


class ScoringInputError(ModelError):
    """The scoring input is empty or not for the requested as-of date."""
