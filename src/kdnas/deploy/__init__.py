"""From a search to a model a user can take away and use.

Typical use::

    from kdnas.deploy import export_model, load_model, predict_files

    export_model("kdnas-search.sqlite", "my-model")      # the run's best evaluation
    model = load_model("my-model")                       # no store, no training data
    for p in predict_files(model, ["a.png", "b.png"]):
        print(p.file, p.label, p.probability)

``kdnas.load_model`` is ``load_model``. The weights come from the store's kept weights
(``kdnas.train.WeightsFolder``, written by every full-data evaluation of a search).
"""

from __future__ import annotations

from kdnas.deploy._folder import (
    FORMAT,
    FORMAT_VERSION,
    LoadedModel,
    MissingWeightsError,
    ModelFolderError,
    Preprocessing,
    evaluation_weights_key,
    export_model,
    find_evaluation,
    full_data_evaluations,
    load_model,
    retrain_command,
)
from kdnas.deploy._use import (
    IMAGE_SUFFIXES,
    BestRow,
    Prediction,
    best_rows,
    evaluate_model,
    format_best_table,
    image_files,
    predict_files,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "IMAGE_SUFFIXES",
    "BestRow",
    "LoadedModel",
    "MissingWeightsError",
    "ModelFolderError",
    "Prediction",
    "Preprocessing",
    "best_rows",
    "evaluate_model",
    "evaluation_weights_key",
    "export_model",
    "find_evaluation",
    "format_best_table",
    "full_data_evaluations",
    "image_files",
    "load_model",
    "predict_files",
    "retrain_command",
]
