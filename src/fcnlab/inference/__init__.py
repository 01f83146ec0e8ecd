"""Running trained FCNs: evaluation on a split, prediction on image files, ONNX export."""
