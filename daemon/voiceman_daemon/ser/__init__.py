"""Speech-emotion recognition backends for the voiceman daemon.

    load_dimensional(path, device="auto") -> DimensionalSER   # arousal/dominance/valence
    load_categorical(path, device="auto") -> CategoricalSER   # label + probabilities

Both load from local directories only, freeze the model, warm it up once and
expose .model_id, .device, .device_reason, .weights_sha256, .predict(waveforms).
"""

from .categorical import CategoricalSER, load_categorical
from .device import DeviceChoice, select_device
from .dimensional import AudeeringDimensionalModel, DimensionalSER, load_dimensional
from .errors import DeviceUnavailableError, ModelDirectoryError, SERLoadError, WeightIntegrityError
from .results import CategoricalResult, DimensionalResult, SegmentError

__all__ = [
    "AudeeringDimensionalModel",
    "CategoricalResult",
    "CategoricalSER",
    "DeviceChoice",
    "DeviceUnavailableError",
    "DimensionalResult",
    "DimensionalSER",
    "ModelDirectoryError",
    "SERLoadError",
    "SegmentError",
    "WeightIntegrityError",
    "load_categorical",
    "load_dimensional",
    "select_device",
]
