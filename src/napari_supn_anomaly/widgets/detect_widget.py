"""The Detect widget: choose an image, a model and a sensitivity; get a heatmap, cells and candidates.

Widgets hold no science: this one turns layers into pipeline inputs (``pipeline.stacks``), runs
the pipeline generator in a ``thread_worker`` and turns the result into layers (``layers``).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import (ComboBox, Container, FloatSlider, FloatSpinBox, Label, ProgressBar, PushButton, SpinBox,
                              create_widget)
from napari.utils.notifications import show_error, show_info

from ..models import ModelFileError, builtin_model_names, load_model
from ..pipeline.intensity import MODES as INTENSITY_MODES
from ..pipeline.result import DetectionResult
from ..pipeline.stacks import DEFAULT_FPR, DetectSettings, iter_detect, normalise_axes, select_channels
from ..scorers import SCORERS, attach_segmenter_file, available_scorers, describe_cost, shipped_segmenter_path
from ..supn.devices import DEVICE_CHOICES, describe_device, resolve_device
from . import layers as layer_tools
from .jobs import start_job
from .model_registry import REGISTRY

if TYPE_CHECKING:
    import napari

GREY_FROM_RGB = "grey (mean of R, G, B)"


class DetectWidget(Container):
    """Find parasite candidates in the selected image with a model of healthy cells."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        self.viewer = viewer
        self._models: dict = {}          # choice -> loaded AnomalyModel
        self._worker = None
        self._result: DetectionResult | None = None   # the last result, at its first threshold
        self._result_source = None                     # (image layer, axes, model, scorer)
        self._output_layers: dict = {}
        self.model_runs = 0                            # how many times the model was run (for tests)

        self._image = create_widget(annotation="napari.layers.Image", label="image")
        self._image.tooltip = "The field or stack to analyse."
        self._open = PushButton(text="Open stack…", tooltip="Open a TIFF or OME-TIFF and confirm its axes.")
        self._cells = create_widget(annotation="napari.layers.Labels", label="cell labels",
                                    options={"nullable": True})
        self._cells.tooltip = ("Optional: cells found by another tool (e.g. cellpose). Empty: the plugin "
                               "finds the cells itself.")
        # choices are callables: napari resets every combo box of a dock widget when layers change
        self._channel_options: list = []
        self._channel = ComboBox(label="channel", choices=lambda _w: self._channel_options,
                                 tooltip="The channel the model looks at.")
        self._model = ComboBox(label="model", choices=self._model_choices,
                               tooltip="Built-in models, models of this session (e.g. fine-tuned), or a file.")
        self._load_model = PushButton(text="Load model file…", tooltip="Use a model saved to a file (.safetensors).")
        self._model_info = Label(value="")
        self._scorer = ComboBox(label="scorer", choices=lambda _w: available_scorers(self.model) if self.model else [],
                                tooltip="How a cell's anomaly score is made: the model's own residual, or one of "
                                        "the seed papers' scorers this model is calibrated for.")
        self._scorer_info = Label(value="")
        self._load_network = PushButton(text="Scorer network…",
                                        tooltip="Add a self-supervised scorer (ssl-*): load its trained network, "
                                                "made for this model by 'supn-anomaly train-scorer'.")
        self._network_files: dict = {}   # (id(model), scorer) -> file name of a network loaded here
        self._device = ComboBox(label="device", choices=list(DEVICE_CHOICES), value="auto",
                                tooltip="auto: an NVIDIA or Apple GPU when present, else the CPU.")
        self._device_info = Label(value="")
        self._diameter = FloatSpinBox(label="cell diameter (px)", value=0.0, min=0.0, max=2000.0, step=1.0,
                                      tooltip="Diameter of the cells in this image, in pixels. 0: measure it "
                                              "from the cells found. The field is rescaled so cells match "
                                              "the size the model was trained on.")
        self._intensity = ComboBox(label="intensity", choices=list(INTENSITY_MODES), value="auto",
                                   tooltip="auto: bring the image to the model's intensity range only when it is "
                                           "clearly off (e.g. a 12- or 16-bit camera); match: always; off: never.")
        self._run = PushButton(text="Run")
        self._cancel = PushButton(text="Cancel", enabled=False)
        self._progress = ProgressBar(label="progress", min=0, max=1000, value=0)
        self._sensitivity = FloatSlider(label="healthy cells flagged (%)", min=0.1, max=20.0, step=0.1,
                                        value=100 * DEFAULT_FPR,
                                        tooltip="Sensitivity: the share of healthy cells that would be flagged "
                                                "(measured on healthy cells when the model was trained). Moving "
                                                "it re-thresholds the candidates without running the model.")
        self._min_area = SpinBox(label="smallest region (px)", value=1, min=1, max=100000,
                                 tooltip="Candidate regions smaller than this are dropped (re-cut without "
                                         "running the model).")
        self._threshold_info = Label(value="")
        self._status = Label(value="")
        self.extend([self._image, self._open, self._cells, self._channel, self._model, self._load_model,
                     self._model_info, self._scorer, self._scorer_info, self._load_network, self._device,
                     self._device_info, self._diameter, self._intensity, self._run, self._cancel, self._progress,
                     self._sensitivity, self._min_area, self._threshold_info, self._status])

        self.native.setMaximumWidth(480)  # leave the canvas its room
        for info in (self._model_info, self._scorer_info, self._device_info, self._threshold_info, self._status):
            info.native.setWordWrap(True)

        self._image.changed.connect(self._on_image_changed)
        self._model.changed.connect(self._on_model_changed)
        self._scorer.changed.connect(lambda _: self._on_scorer_changed())
        self._load_network.changed.connect(self._on_load_network_clicked)
        self._device.changed.connect(lambda _: self._update_device_info())
        self._sensitivity.changed.connect(self._on_sensitivity)
        self._min_area.changed.connect(self._on_sensitivity)
        self._run.changed.connect(self.run)
        self._cancel.changed.connect(self.cancel)
        self._open.changed.connect(self._on_open_clicked)
        self._load_model.changed.connect(self._on_load_model_clicked)
        REGISTRY.changed.connect(self._on_registry_changed)
        self.native.destroyed.connect(self._disconnect)  # no callbacks into a closed widget

        self._on_model_changed(self._model.value)
        self._on_image_changed(self._image.value)
        self._update_device_info()

    # -- models ------------------------------------------------------------------------------
    def _model_choices(self, _widget=None) -> list[str]:
        names = builtin_model_names() + [n for n in REGISTRY.names() if n not in builtin_model_names()]
        extra = [c for c in self._models if c not in names]  # files loaded through this widget
        return names + extra

    def _disconnect(self, *_):
        try:
            REGISTRY.changed.disconnect(self._on_registry_changed)
        except Exception:
            pass

    def _on_registry_changed(self, name: str):
        self._models.pop(name, None)   # a re-registered name gets its new model
        current = self._model.value
        self._model.reset_choices()
        if current in self._model.choices:
            self._model.value = current

    @property
    def model(self):
        """The AnomalyModel chosen now (None if none could be loaded)."""
        return self._models.get(self._model.value)

    def select_model(self, name: str) -> None:
        self._model.reset_choices()
        self._model.value = name

    def load_model_file(self, path: str | Path) -> bool:
        """Load a model file, list it under its name and select it. False (and a notification) if damaged."""
        try:
            model = load_model(Path(path))
        except (ModelFileError, OSError, ValueError) as exc:
            show_error(f"Could not load the model: {exc}")
            return False
        name = model.name if model.name not in self._model_choices() else f"{model.name} ({Path(path).name})"
        self._models[name] = model
        self._model.reset_choices()
        self._model.value = name
        return True

    def _on_load_model_clicked(self, _=None):
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(self.native, "Load a model file", "",
                                              "Model files (*.safetensors);;All files (*)")
        if path:
            self.load_model_file(path)

    # -- scorers -------------------------------------------------------------------------------
    def load_scorer_network(self, path: str | Path) -> bool:
        """Attach a self-supervised scorer's network file to the chosen model and select its scorer.

        False (and a notification) for a missing, foreign or damaged file, a network made for
        another model or one without a healthy calibration; nothing changes then.
        """
        model = self.model
        if model is None:
            show_error("Choose a model first: a scorer network belongs to one model.")
            return False
        if self._worker is not None:
            show_info("Detection is running; load the scorer network when it has finished.")
            return False
        try:
            name = attach_segmenter_file(model, path, require_calibration=True)
        except (ModelFileError, OSError, ValueError) as exc:
            show_error(f"Could not load the scorer network: {exc}")
            return False
        self._network_files[(id(model), name)] = Path(path).name
        self._scorer.reset_choices()
        self._scorer.value = name
        self._on_scorer_changed()
        return True

    def _on_load_network_clicked(self, _=None):
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(self.native, "Load a scorer network", "",
                                              "Scorer networks (*.safetensors);;All files (*)")
        if path:
            self.load_scorer_network(path)

    def _on_scorer_changed(self):
        self._update_threshold_info()
        model, name = self.model, self._scorer.value
        if model is None or name not in SCORERS:
            self._scorer_info.value = ""
            return
        text = describe_cost(name)
        if SCORERS[name].segmenter is not None:
            loaded = self._network_files.get((id(model), name))
            text += f" (network: {loaded})" if loaded else (
                f" (network shipped with {model.name})" if shipped_segmenter_path(model, name) else "")
        self._scorer_info.value = text

    def _on_model_changed(self, choice):
        if choice is None:
            self._model_info.value = "no model: load one with 'Load model file…'"
            self._scorer.reset_choices()
            return
        if choice not in self._models:
            try:
                self._models[choice] = REGISTRY.get(choice) if choice in REGISTRY else load_model(choice)
            except (ModelFileError, OSError, ValueError) as exc:
                show_error(f"Could not load the model {choice!r}: {exc}")
                self._model_info.value = "this model could not be loaded"
                self._scorer.reset_choices()
                return
        model = self._models[choice]
        default = model.metadata.get("default_scorer")
        self._scorer.reset_choices()
        self._scorer.value = default if default in model.scorers else model.scorers[0]
        self._model_info.value = (f"{model.modality}, {model.channels} channel(s), trained on cells of "
                                  f"{model.cell_diameter_px:.0f} px in {model.crop_size} px crops")
        self._update_channels()
        self._on_scorer_changed()

    # -- image and channels --------------------------------------------------------------------
    def _on_image_changed(self, layer):
        self._update_channels()

    def _update_channels(self):
        layer = self._image.value
        model = self.model
        choices: list = []
        if layer is not None and model is not None and model.channels == 1:
            axes = layer_tools.layer_axes(layer)
            if "C" in axes:
                choices = [(name, i) for i, name in enumerate(layer_tools.layer_channel_names(layer))]
            elif "S" in axes:
                choices = [(GREY_FROM_RGB, -1), ("red", 0), ("green", 1), ("blue", 2)]
        self._channel_options = choices
        self._channel.reset_choices()
        self._channel.visible = bool(choices)

    def _update_device_info(self):
        try:
            device = resolve_device(self._device.value)
            self._device_info.value = f"runs on: {describe_device(device)}"
        except ValueError as exc:
            self._device_info.value = f"not available: {exc}"

    # -- sensitivity -------------------------------------------------------------------------------
    def threshold(self) -> float | None:
        model, scorer = self.model, self._scorer.value
        if model is None or scorer is None:
            return None
        try:
            return model.threshold_for_fpr(self._sensitivity.value / 100.0, scorer)
        except ValueError:
            return None

    def _update_threshold_info(self):
        thr = self.threshold()
        if thr is None:
            self._threshold_info.value = "this model has no healthy-cell calibration"
        else:
            self._threshold_info.value = f"score threshold {thr:.3g}"

    def _on_sensitivity(self, _value=None):
        self._update_threshold_info()
        if self._result is None or self._result_source is None:
            return
        _layer, _axes, model, scorer = self._result_source
        try:
            thr = model.threshold_for_fpr(self._sensitivity.value / 100.0, scorer)
        except ValueError:
            return
        self._threshold_info.value = f"score threshold {thr:.3g}"
        base = dataclasses.replace(self._result, min_area=int(self._min_area.value))
        rethresholded = base.with_threshold(thr, target_fpr=self._sensitivity.value / 100.0)
        self._apply_threshold(rethresholded)

    def _apply_threshold(self, result: DetectionResult):
        layers = self._output_layers
        points = layers.get("candidates")
        if points is None or points not in self.viewer.layers:
            return
        layer_tools.update_candidates(points, layer_tools.candidate_points(result),
                                      layer_tools.candidate_features(result))
        cell_features = layer_tools.cell_features(result)
        cells = layers.get("cells")
        if cells is not None and cells in self.viewer.layers and cell_features is not None:
            cells.features = cell_features
        for layer in layers.values():
            if layer in self.viewer.layers:
                layer.metadata = {**layer.metadata, "provenance": dict(result.provenance)}
        self._status.value = result.summary()
        self.current_result = result

    # -- running -----------------------------------------------------------------------------------
    def _inputs(self):
        """Everything the pipeline needs, checked; raises ValueError with a message for people."""
        layer = self._image.value
        if layer is None:
            raise ValueError("choose an image layer first (File > Open, or 'Open stack…')")
        model = self.model
        if model is None:
            raise ValueError("choose a model first")
        axes = normalise_axes(layer_tools.layer_axes(layer), layer.data.ndim)
        channel = self._channel.value if self._channel_options else None
        if channel == -1:
            channel = None  # grey from RGB
        select_channels(axes, layer.data.shape, model, channel)
        if not np.issubdtype(np.dtype(layer.data.dtype), np.number):
            raise ValueError("the image must hold numbers")
        labels = self._cells.value
        cells = None
        if labels is not None:
            cells = np.asarray(labels.data)
            yx = layer.data.shape[axes.index("Y")], layer.data.shape[axes.index("X")]
            if cells.shape[-2:] != yx:
                raise ValueError(f"the cell labels ({cells.shape}) do not match the image planes {yx}")
        resolve_device(self._device.value)
        settings = DetectSettings(scorer=self._scorer.value, fpr=self._sensitivity.value / 100.0,
                                  cell_diameter=self._diameter.value or None, device=self._device.value,
                                  min_area=int(self._min_area.value), intensity=self._intensity.value)
        return layer, axes, model, channel, cells, settings

    def run(self, _=None):
        """Start detection in a worker thread. Bad input: a notification, nothing else changes."""
        if self._worker is not None:
            show_info("Detection is already running; cancel it first.")
            return None
        try:
            layer, axes, model, channel, cells, settings = self._inputs()
        except ValueError as exc:
            show_error(f"Cannot run: {exc}")
            return None
        source = {"image_layer": layer.name}

        def job():
            result = yield from iter_detect(layer.data, axes, model, channel=channel, labels=cells,
                                            settings=settings, source=source)
            return result

        self.model_runs += 1
        self._worker = start_job(
            job, "Finding parasite candidates", run_button=self._run, cancel_button=self._cancel,
            progress_bar=self._progress, status=self._status, on_progress=self._on_progress,
            on_returned=lambda result: self._on_result(result, layer, axes, model, settings.scorer),
            on_error=self._on_error, on_finished=self._on_finished, on_aborted=self._on_aborted)
        return self._worker

    def cancel(self, _=None):
        """Stop after the current batch of cells (or plane)."""
        if self._worker is not None:
            self._status.value = "cancelling…"
            self._worker.quit()

    def _on_progress(self, event):
        self._progress.value = int(1000 * event.fraction)
        self._status.value = event.message
        self.last_progress = event

    def _on_result(self, result: DetectionResult, layer, axes, model, scorer):
        if layer not in self.viewer.layers:
            show_error("The image layer was closed while the detection ran; the result was dropped.")
            return
        self._result = result
        self._result_source = (layer, axes, model, scorer)
        self.current_result = result
        self._output_layers = layer_tools.show_result(self.viewer, result, layer, axes)
        self._progress.value = 1000
        self._status.value = result.summary()
        self._update_threshold_info()

    def _on_error(self, exc: Exception):
        message = str(exc) if isinstance(exc, (ValueError, ModelFileError)) else f"{type(exc).__name__}: {exc}"
        show_error(f"Detection failed: {message}")
        self._status.value = f"failed: {message}"

    def _on_aborted(self):
        self._status.value = "cancelled; no layers were changed"

    def _on_finished(self):
        self._worker = None
        self._run.enabled = True
        self._cancel.enabled = False

    # -- opening stacks ----------------------------------------------------------------------
    def _on_open_clicked(self, _=None):
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(self.native, "Open an image or stack", "",
                                              "Images (*.tif *.tiff *.ome.tif *.ome.tiff);;All files (*)")
        if path:
            self.open_stack(path)

    def open_stack(self, path: str | Path, axes: str | None = None):
        """Open ``path`` with bioio; ask the user to confirm the axes unless ``axes`` is given."""
        from ..io import open_image, with_axes

        try:
            image = open_image(path)
            if axes is None:
                axes = self._ask_axes(image)
                if axes is None:
                    return None
            image = with_axes(image, axes)
        except ValueError as exc:
            show_error(f"Cannot open {Path(path).name}: {exc}")
            return None
        rgb = image.axes.endswith("S")
        spatial = [a for a in image.axes if a != "S"]
        scale = [1.0] * len(spatial)
        if image.pixel_size:
            scale[-2:] = list(image.pixel_size)
        kwargs = dict(name=Path(path).name, rgb=rgb, scale=scale,
                      metadata={"axes": image.axes, "channel_names": image.channel_names,
                                "source_path": str(path), "pixel_size_um": image.pixel_size})
        try:
            kwargs["axis_labels"] = [a.lower() for a in spatial]
            layer = self.viewer.add_image(image.data, **kwargs)
        except TypeError:  # older napari without axis_labels
            kwargs.pop("axis_labels")
            layer = self.viewer.add_image(image.data, **kwargs)
        self._image.reset_choices()
        self._image.value = layer
        return layer

    def _ask_axes(self, image) -> str | None:
        from qtpy.QtWidgets import QInputDialog

        text, ok = QInputDialog.getText(
            self.native, "Confirm the axes",
            f"{Path(image.path).name}: {image.describe()}\n\n"
            "One letter per axis: T time, Z focus, C channel, Y, X, S RGB colour.\n"
            "A plain 3-plane TIFF is read as RGB (S); type C if it holds three channels, Z if three planes.",
            text=image.axes)
        return text.strip().upper() if ok and text.strip() else None
