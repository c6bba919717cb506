"""Pre-trained models: feature vectors per machine, the model registry, training and scoring.

* :mod:`~plantwatch.models.features` — one row per (machine, window): the stream's window
  features pivoted by the feature spec a model was trained with. Training and the stream build
  them with the same code.
* :mod:`~plantwatch.models.registry` — versioned models (ONNX plus metadata) in a folder or a
  bucket, one promoted version per machine type.
* :mod:`~plantwatch.models.train` — ``plantwatch train``: features from stored readings through
  the stream's own pipeline, fit, threshold from training data only, register.
* :mod:`~plantwatch.models.scoring` — the stream's side: the promoted model per machine type in
  onnxruntime, windows scored in batches, picked up again when another version is promoted.
"""
