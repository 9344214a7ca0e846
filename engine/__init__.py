"""The recommender (load, train, evaluate, tune, serve) and the rendering pipeline."""
