"""Errors raised while loading speech-emotion models.

Every message names the directory or file involved and what is wrong with it,
so an investigator can fix a model folder without reading code.
"""


class SERLoadError(RuntimeError):
    """Base class: a speech-emotion model could not be loaded."""


class ModelDirectoryError(SERLoadError):
    """The model directory is missing, or lacks a file the layout requires."""


class WeightIntegrityError(SERLoadError):
    """Weight files do not match the expected SHA-256, or do not fit the model."""


class DeviceUnavailableError(SERLoadError):
    """An explicitly requested device cannot be used."""
