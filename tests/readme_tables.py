"""The README's "Models x encoders" table, read once for the tests that check it against the models.

The table (written by `benchmarks/combinations.py --readme`) has one row per encoder and a last row for the
models built without one, one column per model; a cell is the parameter count with 12 classes ("6.98M"),
followed by " ✓" where every exported file met its contract, " ✗" where one did not, nothing where the
combination was built but not exported.
"""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
OWN_TOPOLOGY_ROW = "own topology"
CELL = re.compile(r"(\d+(?:\.(\d+))?)M( [✓✗])?")


def readme_section():
    return README.read_text().split("## Models x encoders", 1)[1].split("\n## ", 1)[0]


def models_by_encoder():
    """{(model, encoder or None): (millions as written, its number of decimals, export mark or None)}."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in readme_section().splitlines()
            if line.startswith("|") and not line.startswith("|---")]
    header, table = rows[0], {}
    assert header[0] == "encoder", f"the README table starts with {header[0]!r}, not 'encoder'"
    for cells in rows[1:]:
        assert len(cells) == len(header), f"README row {cells[0]!r} has {len(cells)} cells, its header {len(header)}"
        encoder = None if cells[0] == OWN_TOPOLOGY_ROW else cells[0]
        for model, cell in zip(header[1:], cells[1:]):
            if cell:
                match = CELL.fullmatch(cell)
                assert match, f"README cell {model} x {cells[0]}: {cell!r}"
                mark = match.group(3).strip() if match.group(3) else None
                table[(model, encoder)] = (float(match.group(1)), len(match.group(2) or ""), mark)
    return table
