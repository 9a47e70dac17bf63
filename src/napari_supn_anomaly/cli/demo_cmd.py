"""supn-anomaly demo: detection on a built-in sample, scored against its true parasites (or infected cells)."""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import InputError
from ..files import check_output_folder
from ..pipeline.sensitivity import describe_default_fprs
from ..sample_data import SAMPLES
from ..supn.devices import DEVICE_CHOICES
from .display import require_display, require_napari


def add_parser(sub, name):
    p = sub.add_parser(name, help="run detection on the built-in example and show what it found",
                       description="Runs detection on a synthetic example with known parasites, writes the "
                                   "heatmap, tables and one overlay picture per plane, and reports how many true "
                                   "parasites were found.")
    p.add_argument("--out", default="supn-anomaly-demo", help="output folder (default: supn-anomaly-demo)")
    p.add_argument("--sample", choices=list(SAMPLES), default="fluorescence", help="which example (default fluorescence)")
    p.add_argument("--model", default=None, help="model name or file (default: the built-in model for the sample)")
    p.add_argument("--fpr", type=float, default=None,
                   help="target fraction of healthy cells flagged (default: the model's, as in the Detect widget: "
                        f"{describe_default_fprs()})")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="where the model runs (default auto)")
    p.add_argument("--gui", action="store_true",
                   help="open napari with the image, the truth and the results (needs a display)")
    return p


def default_model_for(modality: str) -> str:
    from ..models import builtin_model_names, read_metadata
    from ..models.builtin import builtin_model_path

    for name in builtin_model_names():
        if read_metadata(builtin_model_path(name)).get("modality") == modality:
            return name
    raise InputError(f"no built-in {modality} model is installed; pass one with --model")


def run(args) -> int:
    if args.fpr is not None and not 0 < args.fpr < 1:
        raise InputError("--fpr must lie between 0 and 1")
    check_output_folder(args.out)  # before the detection, not after it
    if args.gui:  # before the detection, not after it
        require_napari()
        require_display()
    from ..io import write_result
    from ..models import load_model
    from ..overlay import write_overlays
    from ..pipeline.stacks import DetectSettings, iter_detect, run_to_end
    from ..sample_data import load_sample
    from ..scoring import resolve
    from ..synthetic import match_parasites

    sample = load_sample(args.sample)
    model = load_model(args.model or default_model_for(sample.modality))
    if model.modality != sample.modality:
        print(f"note: the model {model.name!r} is a {model.modality} model and the sample is {sample.modality}",
              file=sys.stderr)
    settings = DetectSettings(fpr=args.fpr, device=args.device)  # None: the model's default
    print(f"sample: {sample.path.name} ({sample.n_planes} plane(s)); model: {model.name}", file=sys.stderr)
    result = run_to_end(iter_detect(sample.image, sample.axes, resolve(model), settings=settings,
                                    source={"input": sample.path.name}),
                        lambda e: print(f"  {e.message}", file=sys.stderr) if e.stage == "plane done" else None)
    out = Path(args.out)
    write_result(result, out, sample.name)
    regions = result.candidate_mask()
    matches = [match_parasites(regions[result.plane_index(flat)], sample.truth(flat))
               for flat in range(result.n_planes)]
    fpr = result.provenance["target_fpr"]
    titles = [f"{model.name}, {100 * fpr:g}% sensitivity: {m.summary(sample.truth_kind)}" for m in matches]
    write_overlays(result, sample.image, sample.axes, out, sample.name, title=titles, truth=sample.parasites,
                   truth_label=sample.truth_one)
    match = sum(matches[1:], matches[0])
    print(f"{result.summary()}")
    print(f"{match.summary(sample.truth_kind)}")
    print(f"results in {out}/")
    if args.gui:
        show_in_napari(sample, result, model)
    return 0


def set_up_viewer(viewer, sample, result, model):
    """The demo in ``viewer``: the sample, its truth (hidden) and the Detect widget showing
    ``result`` at the sensitivity it was cut at, so that the widget and the layers agree. The widget."""
    from ..models import builtin_model_names
    from ..widgets.detect_widget import DetectWidget
    from ..widgets.model_registry import register_model

    layer = viewer.add_image(sample.image, name=sample.name, rgb=sample.axes.endswith("S"),
                             axis_labels=sample.axis_labels,
                             metadata={"axes": sample.axes, "modality": sample.modality})
    viewer.add_labels(sample.parasites, name=sample.truth_name, visible=False,
                      axis_labels=sample.axis_labels)
    if model.name not in builtin_model_names():
        register_model(model.name, model)
    widget = DetectWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Detect anomalies", area="right")
    widget.select_model(model.name)
    widget.select_image(layer)
    widget.set_sensitivity(100 * result.provenance["target_fpr"])
    widget.show_result(result, layer)
    return widget


def show_in_napari(sample, result, model) -> None:
    import napari

    set_up_viewer(napari.Viewer(title="napari-supn-anomaly demo"), sample, result, model)
    napari.run()
