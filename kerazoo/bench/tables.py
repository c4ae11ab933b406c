"""The benchmark's results (`kerazoo.bench.benchmark.run`) as Markdown tables."""


def _fmt(value, digits=1):
    return "n/a" if value is None else f"{value:.{digits}f}"


def _rss(measured):
    return f"{measured['peak_rss_mib']:.0f} ({measured['added_rss_mib']:.0f})"


def _cpu(machine):
    """The CPU's model name and kind (older results recorded only the processor)."""
    cpu = machine.get("cpu")
    if not cpu:
        return machine["processor"]
    return f"{cpu['model_name']} ({cpu['kind']}; {' '.join(cpu['flags'])})"


def markdown(results):
    """The results as Markdown: one training table, one inference table, one peer table."""
    peak = results["peak_gflops"]
    settings = results["settings"]
    lines = [
        f"Machine: {_cpu(results['machine'])}, {results['machine']['cpu_count']} cores; measured peak "
        f"{peak:.0f} GFLOP/s (float32 matmul). Medians of {settings['runs']} runs after {settings['warmup']} "
        f"warm-up; {settings['num_classes']} classes; random weights and inputs. % of peak: achieved FLOP/s "
        "over that float32 peak (int8 too); training counts 3 forward passes. Peak RSS: the measuring "
        "process's, with what the measurement added to its imports' peak in brackets.",
        "",
        f"| case | precision | params | GFLOP/forward | train images/s (batch {settings['train_batch_size']}) "
        "| % of peak | first step s | peak RSS MiB (added) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for case in results["cases"]:
        for precision, training in case.get("precisions", {"float32": case["training"]}).items():
            lines.append(f"| {case['case']} | {precision} | {case['params'] / 1e6:.2f}M | {case['forward_gflops']:.2f} "
                         f"| {training['images_per_second']:.2f} | {100 * training['fraction_of_peak']:.0f} "
                         f"| {training['first_step_seconds']:.1f} | {_rss(training)} |")
    batches = [str(b) for b in settings["batch_sizes"]]
    lines += ["", "| case | format | size MB | " + " | ".join(f"batch {b} ms (% peak)" for b in batches)
              + " | peak RSS MiB (added) |", "|---|---|---:|" + "---:|" * len(batches) + "---:|"]
    for case in results["cases"]:
        for fmt, measured in case["inference"].items():
            if "error" in measured:
                lines.append(f"| {case['case']} | {fmt} | | " + " | ".join("" for _ in batches)
                             + f" | failed: {measured['error'][:80]} |")
                continue
            cells = []
            for b in batches:
                ms = measured["latency_ms"].get(b)
                cells.append("n/a" if ms is None else
                             f"{ms:.1f} ({100 * measured['fraction_of_peak'][b]:.0f}%)")
            lines.append(f"| {case['case']} | {fmt} | {measured['size_bytes'] / 1e6:.1f} | " + " | ".join(cells)
                         + f" | {_rss(measured)} |")
    lines += peer_markdown([c for c in results["cases"] if "peer" in c], batches)
    return "\n".join(lines) + "\n"


def peer_markdown(peered, batches):
    """The peer's modes, then kerazoo's ratio in each precision against the peer's best mode of its class."""
    from kerazoo.bench.peer import MODE_DESCRIPTIONS

    if not peered:
        return []
    lines = ["", "Peer: segmentation-models-pytorch, same architecture, in each of its modes.", "",
             "| case | peer mode | train images/s | first step s | "
             + " | ".join(f"batch {b} ms" for b in batches) + " | peak RSS MiB (added) |",
             "|---|---|---:|---:|" + "---:|" * len(batches) + "---:|"]
    for case in peered:
        peer = case["peer"]
        if "skipped" in peer:
            lines.append(f"| {case['case']} | skipped: {peer['skipped']} |" + " |" * (len(batches) + 3))
            continue
        for mode, measured in peer["modes"].items():
            name = f"{peer['description']} {MODE_DESCRIPTIONS.get(mode, mode)}"
            if "error" in measured:
                lines.append(f"| {case['case']} | {name} | failed: {measured['error'][:120]} |"
                             + " |" * (len(batches) + 2))
                continue
            training, latency = measured["training"], measured["inference"]["latency_ms"]
            lines.append(f"| {case['case']} | {name} | {training['images_per_second']:.2f} "
                         f"| {training['first_step_seconds']:.1f} | "
                         + " | ".join(_fmt(latency.get(b)) for b in batches) + f" | {_rss(training)} |")
    lines += ["", "Ratio = kerazoo time / time of the peer's fastest mode in the same precision class (< 1: "
              "kerazoo is faster); kerazoo's inference here is the model in a tf.function; the peer's mode in "
              "brackets.", "",
              "| case | kerazoo precision | train step ratio | "
              + " | ".join(f"batch {b} inference ratio" for b in batches) + " |",
              "|---|---|---:|" + "---:|" * len(batches)]
    for case in peered:
        for precision, ratios in case.get("peer_ratio", {}).items():
            cells = [ratios.get(key) for key in ["training_step"] + [f"inference_batch{b}" for b in batches]]
            lines.append(f"| {case['case']} | {precision} | " + " | ".join(
                "n/a" if cell is None else f"{cell['ratio']:.2f} ({cell['peer_mode']})" for cell in cells) + " |")
    return lines
