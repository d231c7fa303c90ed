"""Using a trained encoder outside the recipes: verification decisions, ONNX export, clustering a folder."""
