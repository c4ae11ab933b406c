"""Runs tf2onnx on a weight-free TensorFlow graph in its own process (started by kerazoo.export.onnx).

Run by path, not imported: `python onnx_child.py WORK_DIR`. WORK_DIR holds `graph.pb` (a GraphDef)
and `job.json` (input and output names, renames, opset); the ONNX model goes to `WORK_DIR/model.onnx`.
It imports neither kerazoo nor the caller's modules, so it needs nothing but TensorFlow and tf2onnx.
"""

import json
import os
import sys


def convert(graph_def, job):
    """The ONNX ModelProto of `graph_def`; `job` as in job.json. The caller's process uses it too."""
    import tensorflow as tf
    import tf2onnx

    with tf.device("/cpu:0"):
        onnx_model, _ = tf2onnx.convert.from_graph_def(
            graph_def, name=job["name"], input_names=job["input_names"], output_names=job["output_names"],
            opset=job["opset"], tensors_to_rename=job["tensors_to_rename"],
        )
    return onnx_model


def main(work_dir):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    with open(os.path.join(work_dir, "job.json")) as handle:
        job = json.load(handle)
    graph_def = tf.compat.v1.GraphDef()
    with open(os.path.join(work_dir, "graph.pb"), "rb") as handle:
        graph_def.ParseFromString(handle.read())
    onnx_model = convert(graph_def, job)
    partial = os.path.join(work_dir, "model.onnx.partial")
    with open(partial, "wb") as handle:
        handle.write(onnx_model.SerializeToString())
    os.replace(partial, os.path.join(work_dir, "model.onnx"))


if __name__ == "__main__":
    # Run by path, Python puts this folder first on sys.path, where kerazoo's onnx.py would hide the onnx package.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != here]
    main(sys.argv[1])
