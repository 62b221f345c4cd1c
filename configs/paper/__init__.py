"""The paper's configs: VGG-16 at 224x224 (vgg16.py) and its evaluation (eval.py)."""
