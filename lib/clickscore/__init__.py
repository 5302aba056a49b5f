"""clickscore: raw e-commerce clickstream to per-user predictions, on Spark and Delta."""

__version__ = "0.1.0"
