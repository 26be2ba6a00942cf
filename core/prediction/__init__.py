"""Prediction: the sliding window over a tensor, and predicting a folder of cases into a run."""
