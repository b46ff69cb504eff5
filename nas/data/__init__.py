"""Datasets named by spec strings, with train / val / test splits (``nas.data.datasets``); the folders beside
this file hold package data (published latencies, shipped predictors)."""
from .datasets import DatasetError, Holdout, ImageData, load_data, stratified

__all__ = ["DatasetError", "Holdout", "ImageData", "load_data", "stratified"]
