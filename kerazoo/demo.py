"""The main job (`make demo`): build every registered model and print its parameters and output shape."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import kerazoo  # noqa: E402
from kerazoo.models import model_encoders  # noqa: E402

DEMO_SIZE = (97, 130)  # deliberately not a multiple of 32: the models pad and crop back inside


def model_table(num_classes=12):
    """Builds every model x encoder (random weights) and returns a rich table of their figures."""
    table = Table(title=f"kerazoo models ({num_classes} classes, input {DEMO_SIZE[0]}x{DEMO_SIZE[1]})")
    for column in ("model", "encoder", "parameters", "input", "output"):
        table.add_column(column, justify="right" if column == "parameters" else "left")
    for name in kerazoo.list_models():
        for encoder in model_encoders(name) or [None]:
            model = kerazoo.create_model(name, encoder=encoder, num_classes=num_classes)
            shape = model.input.shape[1:3] if None not in model.input.shape[1:3] else DEMO_SIZE
            image = np.random.default_rng(0).uniform(0, 255, size=(1, *shape, model.input.shape[-1])).astype("float32")
            output = model(image)
            table.add_row(name, encoder or "-", f"{model.count_params():,}", "x".join(map(str, image.shape[1:])),
                          "x".join(map(str, output.shape[1:])))
    return table


def main():
    console = Console()
    with console.status("building every registered model"):
        table = model_table()
    console.print(table)


if __name__ == "__main__":
    main()
