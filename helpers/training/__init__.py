"""Training: the engine, the bake-off candidates, the bake-off and the v3 campaign, perceptual fine-tuning, run
folders, and shipping a trained model as a codec checkpoint."""
