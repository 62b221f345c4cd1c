"""Evaluation configs (`python eval.py --config configs/eval/default.py[:args]`)."""
