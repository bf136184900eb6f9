"""appsneo: a notebook research kit around GPT-Neo fine-tuned on APPS."""

__version__ = "0.1.0"
