"""Experiments: work that trains and then measures, so it stands above both training and the study. The codec v2
bake-off, the codec v3 campaign, the perceptual objective's sweep and fine-tune, and a trained model's card."""
