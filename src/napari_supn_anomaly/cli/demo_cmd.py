"""supn-anomaly demo: detection on the built-in synthetic sample, scored against its true parasites."""
from __future__ import annotations

import sys
from pathlib import Path

from ..io import write_overlay_png, write_result
from ..models import builtin_model_names, load_model, read_metadata
from ..models.builtin import builtin_model_path
from ..pipeline.stacks import DetectSettings, iter_detect, run_to_end
from ..sample_data import SAMPLES, load_sample
from ..scoring import resolve
from ..supn.devices import DEVICE_CHOICES
from ..synthetic import match_parasites
from ..errors import InputError


# The demo screens: it flags more healthy cells than the widget's default so few parasites are missed.
DEMO_FPR = 0.10


def add_parser(sub, name):
    p = sub.add_parser(name, help="run detection on the built-in example and show what it found",
                       description="Runs detection on a synthetic example with known parasites, writes the "
                                   "heatmap, tables and an overlay picture, and reports how many true "
                                   "parasites were found.")
    p.add_argument("--out", default="supn-anomaly-demo", help="output folder (default: supn-anomaly-demo)")
    p.add_argument("--sample", choices=list(SAMPLES), default="fluorescence", help="which example (default fluorescence)")
    p.add_argument("--model", default=None, help="model name or file (default: the built-in model for the sample)")
    p.add_argument("--fpr", type=float, default=DEMO_FPR,
                   help=f"target healthy-cell flag rate (default {DEMO_FPR}: a screening setting, since every "
                        "candidate is reviewed by a person)")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    p.add_argument("--gui", action="store_true", help="open napari with the image, the truth and the results")
    return p


def default_model_for(modality: str) -> str:
    for name in builtin_model_names():
        if read_metadata(builtin_model_path(name)).get("modality") == modality:
            return name
    raise InputError(f"no built-in {modality} model is installed; pass one with --model")


def run(args) -> int:
    if not 0 < args.fpr < 1:
        raise InputError("--fpr must lie between 0 and 1")
    sample = load_sample(args.sample)
    model = load_model(args.model or default_model_for(sample.modality))
    if model.modality != sample.modality:
        print(f"note: the model {model.name!r} is a {model.modality} model and the sample is {sample.modality}",
              file=sys.stderr)
    settings = DetectSettings(fpr=args.fpr, device=args.device)
    print(f"sample: {sample.path.name} ({sample.n_planes} plane(s)); model: {model.name}", file=sys.stderr)
    result = run_to_end(iter_detect(sample.image, sample.axes, resolve(model), settings=settings,
                                    source={"input": sample.path.name}),
                        lambda e: print(f"  {e.message}", file=sys.stderr) if e.stage == "plane done" else None)
    out = Path(args.out)
    stem = sample.path.stem
    write_result(result, out, stem)
    regions = result.candidate_mask()
    match = None
    for plane in range(sample.n_planes):
        idx = (plane,) if result.is_stack else ()
        m = match_parasites(regions[idx], sample.truth(plane))
        match = m if match is None else match + m
        image = sample.image[idx] if result.is_stack else sample.image
        cands = result.candidate_table
        if result.is_stack:
            cands = cands[cands["plane"] == plane]
        suffix = f"_plane{plane}" if result.is_stack else ""
        write_overlay_png(image, result.heatmap[idx], result.cells[idx], cands, out / f"{stem}{suffix}_overlay.png",
                          title=f"{model.name}: {m.summary()}", truth=sample.parasites[idx] if result.is_stack
                          else sample.parasites, threshold=result.threshold)
    print(f"{result.summary()}")
    print(f"{match.summary()}")
    print(f"results in {out}/")
    if args.gui:
        show_in_napari(sample, result, model)
    return 0


def show_in_napari(sample, result, model):
    try:
        import napari
    except ImportError as exc:
        raise InputError("napari is not installed; pip install 'napari-supn-anomaly[napari,qt]'") from exc
    from ..widgets.detect_widget import DetectWidget
    from ..widgets.model_registry import register_model

    viewer = napari.Viewer(title="napari-supn-anomaly demo")
    name = sample.path.stem
    layer = viewer.add_image(sample.image, name=name, rgb=sample.axes.endswith("S"),
                             metadata={"axes": sample.axes, "modality": sample.modality})
    viewer.add_labels(sample.parasites, name=f"{name} true parasites", visible=False)
    if model.name not in builtin_model_names():
        register_model(model.name, model)
    widget = DetectWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Detect anomalies", area="right")
    widget.select_model(model.name)
    widget.select_image(layer)
    widget.set_sensitivity(100 * result.provenance["target_fpr"])  # the slider says what the result was cut at
    widget.show_result(result, layer)
    napari.run()
