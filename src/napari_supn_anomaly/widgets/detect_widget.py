"""The Detect widget: choose an image, a model and a sensitivity; get a heatmap, cells and candidates.

The view only: what is chosen and found lives in a ``DetectState``, the controls in a
``DetectForm``, and results become layers through ``layers``. Detection runs the pipeline's
generator in a ``thread_worker`` (progress, Cancel within one batch of cells).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import Container
from napari.utils.notifications import show_error, show_info, show_warning

from ..errors import USER_ERRORS, InputError
from ..io import READABLE_SUFFIXES
from ..pipeline.result import DetectionResult
from ..pipeline.axes import check_image_array, normalise_axes, select_channels
from ..pipeline.stacks import DetectSettings, iter_detect
from ..scoring import Scorer
from ..supn.devices import describe_device, resolve_device
from . import layers as layer_tools
from .detect_form import DetectForm
from .detect_state import DetectState
from .jobs import start_job
from .open_stack import add_image_layer, ask_axes

if TYPE_CHECKING:
    import napari


class DetectWidget(Container):
    """Find parasite candidates in the selected image with a model of healthy cells."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        self.viewer = viewer
        self._state = DetectState()
        self._form = form = DetectForm(self._state)
        self._worker = None
        self._outputs: dict = {}   # role -> output layer of the result shown
        self.extend(form.widgets())
        self.native.setMaximumWidth(480)  # leave the canvas its room

        form.image.changed.connect(lambda _: self._update_channels())
        form.model.changed.connect(self._on_model_changed)
        form.scorer.changed.connect(lambda _: self._on_scorer_changed())
        form.device.changed.connect(lambda _: self._update_device_info())
        form.sensitivity.changed.connect(self._on_sensitivity)
        form.min_area.changed.connect(self._on_sensitivity)
        form.calibration.changed.connect(self._on_sensitivity)
        form.run.changed.connect(self.run)
        form.cancel.changed.connect(self.cancel)
        form.open.changed.connect(self._on_open_clicked)
        form.load_model.changed.connect(self._on_load_model_clicked)
        form.load_network.changed.connect(self._on_load_network_clicked)
        self._state.registry.changed.connect(self._on_registry_changed)
        self.native.destroyed.connect(self._disconnect)  # no callbacks into a closed widget

        self._on_model_changed(form.model.value)
        self._update_device_info()

    # -- what a person sees ------------------------------------------------------------------------
    @property
    def state(self) -> DetectState:
        return self._state

    @property
    def result(self) -> DetectionResult | None:
        """The result shown, at the sensitivity chosen now."""
        return self._state.result

    @property
    def running(self) -> bool:
        return self._worker is not None

    @property
    def status_text(self) -> str:
        return self._form.status.value

    @property
    def threshold_text(self) -> str:
        return self._form.threshold_info.value

    @property
    def sensitivity(self) -> float:
        """The slider: share of healthy cells flagged, in percent."""
        return self._form.sensitivity.value

    @property
    def scorer_text(self) -> str:
        return self._form.scorer_info.value

    @property
    def model_choices(self) -> list[str]:
        return list(self._form.model.choices)

    @property
    def scorer_choices(self) -> list[str]:
        return list(self._form.scorer.choices)

    @property
    def channel_choices(self) -> list:
        """The channel menu's entries; empty while it is hidden (nothing to choose)."""
        return [] if self._form.channel.native.isHidden() else list(self._form.channel.choices)

    # -- choosing ----------------------------------------------------------------------------------
    def select_image(self, layer) -> None:
        self._form.image.reset_choices()
        self._form.image.value = layer

    def select_model(self, name: str) -> None:
        self._form.model.reset_choices()
        self._form.model.value = name

    def select_scorer(self, name: str) -> None:
        self._form.scorer.value = name

    def set_sensitivity(self, percent: float) -> None:
        """Share of healthy cells flagged, in percent; re-thresholds the result shown."""
        self._form.sensitivity.value = percent

    def set_min_area(self, pixels: int) -> None:
        self._form.min_area.value = pixels

    def set_calibration(self, calibration: str) -> None:
        """Whose healthy cells set the threshold: "slide" (the image's own) or "model"; re-cuts the result shown."""
        self._form.calibration.value = calibration

    def set_intensity(self, mode: str) -> None:
        self._form.intensity.value = mode

    def load_model_file(self, path: str | Path) -> bool:
        """Load a model file, list it under its name and select it. False (and a notification) if damaged."""
        try:
            name = self._state.load_model_file(path)
        except USER_ERRORS as exc:
            show_error(f"Could not load the model: {exc}")
            return False
        self.select_model(name)
        return True

    def load_scorer_network(self, path: str | Path) -> bool:
        """Attach a self-supervised scorer's network file to the chosen model and select its scorer.

        False (and a notification) for a missing, foreign or damaged file, a network made for
        another model or one without a healthy calibration; nothing changes then.
        """
        if self.running:
            show_info("Detection is running; load the scorer network when it has finished.")
            return False
        try:
            self._state.load_scorer_network(path)
        except USER_ERRORS as exc:
            show_error(f"Could not load the scorer network: {exc}")
            return False
        self._show_scorers()
        return True

    def open_stack(self, path: str | Path, axes: str | None = None):
        """Open ``path`` as an image layer and select it; the user confirms the axes unless ``axes`` is given."""
        from ..io import open_image, with_axes

        try:
            image = open_image(path)
            axes = axes or ask_axes(self.native, image)
            if axes is None:
                return None
            image = with_axes(image, axes)
        except ValueError as exc:
            show_error(f"Cannot open {Path(path).name}: {exc}")
            return None
        layer = add_image_layer(self.viewer, image, path)
        self.select_image(layer)
        return layer

    # -- running -----------------------------------------------------------------------------------
    def run(self, _=None):
        """Start detection in a worker thread and return it. Bad input: a notification, None, nothing changes."""
        if self.running:
            show_info("Detection is already running; cancel it first.")
            return None
        try:
            layer, axes, channel, cells = self._image_inputs()
            scorer = self._state.scorer()
            select_channels(axes, layer.data.shape, scorer.model, channel)
            resolve_device(self._form.device.value)
        except USER_ERRORS as exc:
            show_error(f"Cannot run: {exc}")
            return None
        from .review_widget import confirm_replacing_review

        if not confirm_replacing_review(self.viewer, layer.name, self.native):
            return None  # the reviewed layers stay as they are
        form = self._form
        settings = DetectSettings(fpr=self._state.fpr, cell_diameter=form.diameter.value or None,
                                  device=form.device.value, min_area=self._state.min_area,
                                  intensity=form.intensity.value, calibration=self._state.calibration)
        source = {"image_layer": layer.name}

        def job():
            return (yield from iter_detect(layer.data, axes, scorer, channel=channel, labels=cells,
                                           settings=settings, source=source))

        self._worker = start_job(
            job, "Finding parasite candidates", run_button=form.run, cancel_button=form.cancel,
            progress_bar=form.progress, status=form.status, on_progress=self._on_progress,
            on_returned=lambda result: self.show_result(result, layer, scorer),
            on_error=self._on_error, on_finished=self._on_finished, on_aborted=self._on_aborted)
        return self._worker

    def cancel(self, _=None):
        """Stop after the current batch of cells (or plane); no layer changes."""
        if self.running:
            self._form.status.value = "cancelling…"
            self._worker.quit()

    def show_result(self, result: DetectionResult, image_layer, scorer: Scorer | None = None) -> None:
        """Show ``result``, found in ``image_layer``, as layers (replacing this plugin's earlier ones
        for that image). ``scorer``: the one that made it (default: the one chosen now); moving the
        sensitivity re-thresholds with it."""
        if image_layer not in self.viewer.layers:
            show_error("The image layer was closed while the detection ran; the result was dropped.")
            return
        self._state.keep_result(result, scorer or self._state.scorer())
        axes = normalise_axes(layer_tools.layer_axes(image_layer), image_layer.data.ndim)
        self._outputs = layer_tools.show_result(self.viewer, result, image_layer, axes)
        self._form.progress.value = 1000
        self._form.status.value = result.summary()
        self._update_threshold_info()
        for warning in result.warnings:
            show_warning(f"{image_layer.name}: {warning}")

    def _image_inputs(self):
        """The image layer, its axes, the channel and the user's cell labels, checked; InputError for people."""
        layer = self._form.image.value
        if layer is None:
            raise InputError("choose an image layer first (File > Open, or 'Open stack…')")
        axes = normalise_axes(layer_tools.layer_axes(layer), layer.data.ndim)
        channel = self._form.channel.value
        if channel == -1:
            channel = None  # grey from RGB
        check_image_array(layer.data)
        labels = self._form.cells.value
        cells = None if labels is None else np.asarray(labels.data)
        yx = layer.data.shape[axes.index("Y")], layer.data.shape[axes.index("X")]
        if cells is not None and cells.shape[-2:] != yx:
            raise InputError(f"the cell labels ({cells.shape}) do not match the image planes {yx}")
        return layer, axes, channel, cells

    def _on_progress(self, event):
        self._form.progress.value = int(1000 * event.fraction)
        self._form.status.value = event.message
        if getattr(event, "heatmap", None) is not None:  # a lazy whole-slide image: blocks fill in as they finish
            self._show_blocks_so_far(event.heatmap)

    def _show_blocks_so_far(self, heatmap) -> None:
        """A temporary heatmap layer over the finished blocks; the result's own layers replace it."""
        layer = self._form.image.value
        if getattr(self, "_filling", None) is None or self._filling not in self.viewer.layers:
            geometry = layer_tools.output_geometry(layer, normalise_axes(layer_tools.layer_axes(layer),
                                                                         layer.data.ndim))
            self._filling = self.viewer.add_image(heatmap, name=f"{layer.name} heatmap (blocks so far)",
                                                  colormap="inferno", blending="additive", opacity=0.6,
                                                  contrast_limits=(0.0, 10.0), **geometry)
        else:
            self._filling.refresh()

    def _drop_blocks_so_far(self) -> None:
        filling, self._filling = getattr(self, "_filling", None), None
        if filling is not None and filling in self.viewer.layers:
            self.viewer.layers.remove(filling)

    def _on_error(self, exc: Exception):
        message = str(exc) if isinstance(exc, USER_ERRORS) else f"{type(exc).__name__}: {exc}"
        show_error(f"Detection failed: {message}")
        self._form.status.value = f"failed: {message}"

    def _on_aborted(self):
        self._form.status.value = "cancelled; no layers were changed"

    def _on_finished(self):
        self._drop_blocks_so_far()
        self._worker = None
        self._form.run.enabled = True
        self._form.cancel.enabled = False

    # -- keeping the controls in step with the state -----------------------------------------------
    def _on_model_changed(self, choice):
        try:
            model = self._state.choose_model(choice)
        except USER_ERRORS as exc:
            show_error(f"Could not load the model {choice!r}: {exc}")
            model = None
        self._form.model_info.value = (
            "no model: load one with 'Load model file…'" if choice is None else
            "this model could not be loaded" if model is None else
            f"{model.modality}, {model.channels} channel(s), trained on cells of {model.cell_diameter_px:.0f} px "
            f"in {model.crop_size} px crops" + (f"; each cell scored in {model.rotations} orientations"
                                               if model.rotations > 1 else ""))
        if self._form.sensitivity.value != 100 * self._state.fpr:  # the new model's default
            self._form.sensitivity.value = 100 * self._state.fpr
        self._show_scorers()
        self._update_channels()

    def _on_registry_changed(self, name: str):
        self._state.forget_model(name)
        current = self._form.model.value
        self._form.model.reset_choices()
        if current in self._form.model.choices:
            self._form.model.value = current
            if current == name:
                self._on_model_changed(current)  # re-registered under the same name: load the new model

    def _show_scorers(self):
        """The scorer menu for the chosen model, showing the state's scorer."""
        wanted = self._state.scorer_name  # resetting the menu may change the state's choice
        self._form.scorer.reset_choices()
        if wanted in self._form.scorer.choices:
            self._form.scorer.value = wanted
        self._on_scorer_changed()

    def _on_scorer_changed(self):
        self._state.scorer_name = self._form.scorer.value
        self._form.scorer_info.value = self._state.describe_scorer()
        self._update_threshold_info()

    def _update_channels(self):
        self._form.channel.reset_choices()
        self._form.channel.visible = bool(self._form.channel.choices)

    def _update_device_info(self):
        try:
            self._form.device_info.value = f"runs on: {describe_device(resolve_device(self._form.device.value))}"
        except ValueError as exc:
            self._form.device_info.value = f"not available: {exc}"

    def _on_sensitivity(self, _=None):
        self._state.fpr = self._form.sensitivity.value / 100.0
        self._state.min_area = int(self._form.min_area.value)
        self._state.calibration = self._form.calibration.value
        recut = self._state.rethreshold()
        self._update_threshold_info()
        if recut is not None:
            layer_tools.show_threshold(self.viewer, self._outputs, recut)
            self._form.status.value = recut.summary()

    def _update_threshold_info(self):
        self._form.threshold_info.value = self._state.describe_threshold()

    def _disconnect(self, *_):
        try:
            self._state.registry.changed.disconnect(self._on_registry_changed)
        except Exception:
            pass

    # -- file dialogs ------------------------------------------------------------------------------
    def _ask_file(self, title: str, kinds: str) -> str:
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(self.native, title, "", f"{kinds};;All files (*)")
        return path

    def _on_open_clicked(self, _=None):
        patterns = " ".join(f"*{suffix}" for suffix in READABLE_SUFFIXES)
        path = self._ask_file("Open an image or stack", f"Images ({patterns})")
        if path:
            self.open_stack(path)

    def _on_load_model_clicked(self, _=None):
        path = self._ask_file("Load a model file", "Model files (*.safetensors)")
        if path:
            self.load_model_file(path)

    def _on_load_network_clicked(self, _=None):
        path = self._ask_file("Load a scorer network", "Scorer networks (*.safetensors)")
        if path:
            self.load_scorer_network(path)
