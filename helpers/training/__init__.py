"""Training: a run's recipe and schedule (``config``), the model and its fine-tuning weights (``model_setup``),
the objective (``loss``), batches (``batches``), precision measured per machine (``precision``), resumable state
(``state``), the loop (``loop``), run folders (``runs``), the bake-off candidates by name (``candidates``), and
shipping a trained model as a codec checkpoint (``shipping``)."""
