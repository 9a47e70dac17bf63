"""The Fine-tune widget: mark healthy cells, pick a base model, get a model for this microscope.

Widgets hold no science: this one turns layers into the inputs of ``training.regions`` and
``training.finetune``, runs the fine-tuning generator in a ``thread_worker`` (progress bar, live
loss curve, Cancel within one batch) and lists the new model in every Detect widget at once.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import (ComboBox, Container, FloatSpinBox, Label, ProgressBar, PushButton, SpinBox,
                              create_widget)
from napari.utils.notifications import show_error, show_info, show_warning

from ..cells import MODALITIES, guess_modality
from ..errors import USER_ERRORS, Cancelled
from ..models import builtin_model_names, load_model
from ..pipeline.axes import normalise_axes, plane_axes_of, read_plane, select_channels
from ..progress import Progress
from ..supn.devices import DEVICE_CHOICES, resolve_device
from ..training.finetune import FinetuneSettings, finetune, finetuned_name
from ..training.regions import (cells_at_points, cells_from_labels, cells_in_regions, check_training_cells,
                                regions_from_shapes, segment_plane, skipped_warning)
from . import layers as layer_tools
from .jobs import start_job
from .loss_plot import STAGE_COLOURS, LossPlot
from .model_registry import REGISTRY, register_model

if TYPE_CHECKING:
    import napari

REJECTED = "rejected"


class FinetuneFailed(Exception):
    """Training stopped with an error that is not the user's input (shown as a notification)."""


class FinetuneWidget(Container):
    """Fine-tune a model on healthy cells marked in this image."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        self.viewer = viewer
        self._base_models: dict = {}       # choice -> AnomalyModel loaded from a file through this widget
        self._worker = None
        self._stop = threading.Event()
        self._model = None                  # the last fine-tuned model

        self._image = create_widget(annotation="napari.layers.Image", label="image")
        self._image.tooltip = "The image with the healthy cells (the plane shown now, for stacks)."
        self._healthy = ComboBox(label="healthy cells", choices=self._healthy_choices,
                                 tooltip="Where the healthy cells are: a Shapes layer of rectangles or polygons "
                                         "drawn around healthy cells, a Labels layer of healthy cells, or a "
                                         "candidates layer in which you marked false candidates as 'rejected'.")
        self._base = ComboBox(label="base model", choices=self._base_choices,
                              tooltip="The model to start from. It is copied, never changed.")
        self._load_base = PushButton(text="Load base model file…",
                                     tooltip="Start from a model file (e.g. one fine-tuned earlier).")
        self._modality = ComboBox(label="image type", choices=["auto"] + list(MODALITIES), value="auto",
                                  tooltip="auto: dark cells on a light background are bright-field, bright cells on "
                                          "dark are fluorescence. If it differs from the base model's, intensities "
                                          "are inverted so the base model sees familiar cells.")
        self._minutes = FloatSpinBox(label="time budget (min)", value=2.0, min=0.05, max=120.0, step=0.5,
                                     tooltip="Training stops after this many minutes (or earlier).")
        self._seed = SpinBox(label="seed", value=0, min=0, max=2**31 - 1,
                             tooltip="Same seed, same cells, same settings: the same model.")
        self._device = ComboBox(label="device", choices=list(DEVICE_CHOICES), value="auto",
                                tooltip="auto: an NVIDIA or Apple GPU when present, else the CPU.")
        self._train = PushButton(text="Train")
        self._cancel = PushButton(text="Cancel", enabled=False)
        self._progress = ProgressBar(label="progress", min=0, max=1000, value=0)
        self._status = Label(value="Draw rectangles around healthy cells in a Shapes layer, then Train.")
        self._save = PushButton(text="Save model…", enabled=False)
        self.extend([self._image, self._healthy, self._base, self._load_base, self._modality, self._minutes, self._seed,
                     self._device, self._train, self._cancel, self._progress, self._status, self._save])
        self._status.native.setWordWrap(True)  # long messages wrap instead of widening the dock
        self.loss_plot = LossPlot()
        self.native.layout().addWidget(self.loss_plot)

        self._load_base.changed.connect(self._on_load_base_clicked)
        self._train.changed.connect(self.train)
        self._cancel.changed.connect(self.cancel)
        self._save.changed.connect(self._on_save_clicked)
        REGISTRY.changed.connect(self._on_registry_changed)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self._on_layers_changed)
        self.native.destroyed.connect(self._disconnect)

    # -- what a person sees and chooses ------------------------------------------------------------
    @property
    def model(self):
        """The last fine-tuned model (None before the first one)."""
        return self._model

    @property
    def running(self) -> bool:
        return self._worker is not None

    @property
    def status_text(self) -> str:
        return self._status.value

    def select_image(self, layer) -> None:
        self._image.reset_choices()
        self._image.value = layer

    def select_healthy(self, layer) -> None:
        """The Shapes, Labels or candidates layer that marks the healthy cells."""
        self._healthy.reset_choices()
        self._healthy.value = layer

    def set_minutes(self, minutes: float) -> None:
        """The time budget of training."""
        self._minutes.value = minutes

    # -- choices ----------------------------------------------------------------------------------
    def _healthy_choices(self, _widget=None):
        kinds = {"shapes": "regions", "labels": "cells", "points": "rejected candidates"}
        out = []
        for layer in self.viewer.layers:
            kind = layer._type_string
            if kind in kinds and (kind != "points" or "status" in getattr(layer, "features", {})):
                out.append((f"{layer.name} ({kinds[kind]})", layer))
        return out

    def _base_choices(self, _widget=None) -> list[str]:
        names = builtin_model_names() + [n for n in REGISTRY.names() if n not in builtin_model_names()]
        return names + [c for c in self._base_models if c not in names]

    def _on_layers_changed(self, _event=None):
        self._healthy.reset_choices()
        self._image.reset_choices()

    def _on_registry_changed(self, _name: str):
        current = self._base.value
        self._base.reset_choices()
        if current in self._base.choices:
            self._base.value = current

    def _disconnect(self, *_):
        try:
            REGISTRY.changed.disconnect(self._on_registry_changed)
            for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
                event.disconnect(self._on_layers_changed)
        except Exception:
            pass

    def _on_load_base_clicked(self, _=None):
        from qtpy.QtWidgets import QFileDialog
        path, _ = QFileDialog.getOpenFileName(self.native, "Base model file", "", "Model files (*.safetensors)")
        if path:
            self.load_base_file(path)

    def load_base_file(self, path: str | Path) -> bool:
        try:
            model = load_model(Path(path))
        except USER_ERRORS as exc:
            show_error(f"Could not load the model: {exc}")
            return False
        name = f"{model.name} ({Path(path).name})"
        self._base_models[name] = model
        self._base.reset_choices()
        self._base.value = name
        return True

    def select_base(self, name: str) -> None:
        self._base.reset_choices()
        self._base.value = name

    def base_model(self):
        choice = self._base.value
        if choice is None:
            raise ValueError("choose a base model first (or load a model file)")
        if choice in self._base_models:
            return self._base_models[choice]
        if choice in REGISTRY:
            return REGISTRY.get(choice)
        return load_model(choice)

    # -- layers -> training cells -------------------------------------------------------------------
    def _to_image_pixels(self, layer, coords: np.ndarray, image) -> np.ndarray:
        """Coordinates of ``layer``'s data -> (y, x) pixels of the image layer (scale and translate)."""
        coords = np.atleast_2d(np.asarray(coords, float))
        world = np.array([layer.data_to_world(c) for c in coords]).reshape(len(coords), -1)
        nd = image.ndim
        world = np.concatenate([np.zeros((len(world), max(0, nd - world.shape[1]))), world], 1)[:, -nd:]
        pix = np.array([image.world_to_data(w) for w in world]).reshape(len(world), -1)
        return pix[:, -2:]

    def _plane_index(self, image, axes: str) -> tuple[int, ...]:
        """Index of the plane shown now along the image's T/Z axes."""
        n_plane = len(plane_axes_of(axes))
        if n_plane == 0:
            return ()
        point = image.world_to_data(self.viewer.dims.point[-image.ndim:])
        lead = [int(round(v)) for v in np.asarray(point)[:n_plane]]
        dims = [image.data.shape[i] for i, a in enumerate(axes) if a in plane_axes_of(axes)]
        return tuple(int(np.clip(v, 0, d - 1)) for v, d in zip(lead, dims))

    def _inputs(self):
        """Everything training needs, read from the layers (GUI thread, cheap); ValueError for people."""
        image = self._image.value
        if image is None:
            raise ValueError("choose the image layer with the healthy cells first")
        source = self._healthy.value
        if source is None:
            raise ValueError("add a Shapes layer and draw rectangles around healthy cells (or choose a Labels "
                             "layer of healthy cells)")
        base = self.base_model()
        axes = normalise_axes(layer_tools.layer_axes(image), image.data.ndim)
        chan_axis, channels = select_channels(axes, image.data.shape, base, None)
        plane = read_plane(image.data, axes, self._plane_index(image, axes), chan_axis, channels)
        kind = source._type_string
        if kind == "shapes":
            shapes = [self._to_image_pixels(source, v, image) for v in source.data]
            payload = regions_from_shapes(shapes, list(source.shape_type), image.name)
        elif kind == "labels":
            labels = np.asarray(source.data)
            if labels.shape[-2:] != plane.shape[1:]:
                raise ValueError(f"the labels layer {source.name!r} ({labels.shape[-2]} x {labels.shape[-1]}) does "
                                 f"not have the size of the image ({plane.shape[1]} x {plane.shape[2]})")
            payload = labels.reshape(-1, *labels.shape[-2:])[0] if labels.ndim > 2 else labels
        else:
            status = np.asarray(source.features["status"]).astype(str)
            rejected = np.asarray(source.data)[status == REJECTED]
            payload = self._to_image_pixels(source, rejected, image) if len(rejected) else np.zeros((0, 2))
        resolve_device(self._device.value)
        settings = FinetuneSettings(minutes=float(self._minutes.value), seed=int(self._seed.value),
                                    modality=self._modality.value, device=self._device.value)
        return image, plane, kind, payload, base, settings

    @staticmethod
    def _training_cells(plane, kind, payload, image_name: str, modality: str):
        """(the marked healthy cells, the plane's cell labels for the fine-tuning check or None)."""
        if kind == "labels":
            cells = cells_from_labels(plane, payload, image_name, how="labels layer")
            cells.regions = [{"image": image_name, "kind": "labels layer", "n_cells": len(cells)}]
            try:
                return cells, segment_plane(plane, modality)
            except USER_ERRORS:
                return cells, None
        labels = segment_plane(plane, modality)
        if kind == "shapes":
            return cells_in_regions(plane, payload, modality, labels=labels), labels
        return cells_at_points(plane, payload, image_name, modality, labels=labels), labels

    # -- training -----------------------------------------------------------------------------------
    def train(self, _=None):
        """Start fine-tuning in a worker thread. Bad input: a notification, nothing else changes."""
        if self.running:
            show_info("Fine-tuning is already running; cancel it first.")
            return None
        try:
            image, plane, kind, payload, base, settings = self._inputs()
        except USER_ERRORS as exc:
            show_error(f"Cannot fine-tune: {exc}")
            return None

        taken = set(builtin_model_names()) | set(REGISTRY.names())
        name = finetuned_name(base.name, taken)
        stop = self._stop = threading.Event()
        modality = settings.modality if settings.modality != "auto" else guess_modality(plane)

        def job():
            yield Progress("preparing", message="finding the healthy cells…")
            cells, labels = self._training_cells(plane, kind, payload, image.name, modality)
            warning = skipped_warning(cells, len(payload) if kind == "shapes" else None)
            if warning:
                yield Progress("warning", message=warning)
            check_training_cells(cells, base.channels, f"the base model {base.name!r}", settings.holdout_fraction)
            settings.modality = modality
            fields = None if labels is None else {image.name: plane}
            try:
                for event in finetune(base, cells, settings, name=name, base_source=self._base.value,
                                      should_stop=stop.is_set, fields=fields,
                                      field_labels=None if labels is None else {image.name: labels}):
                    if isinstance(event, Progress):
                        yield event
                    else:
                        return event
            except Cancelled:
                return None
            except RuntimeError as exc:  # the worker would swallow RuntimeErrors; report them instead
                raise FinetuneFailed(str(exc)) from exc
            return None

        self.loss_plot.clear()
        self._worker = start_job(
            job, "Fine-tuning", run_button=self._train, cancel_button=self._cancel, progress_bar=self._progress,
            status=self._status, on_progress=self._on_progress,
            on_returned=lambda model: self._on_result(model, name), on_error=self._on_error,
            on_finished=self._on_finished)
        return self._worker

    def cancel(self, _=None):
        """Stop after the current batch: no new model; the base model stays as it was."""
        if self.running:
            self._status.value = "cancelling…"
            self._stop.set()

    def _on_progress(self, event: Progress):
        if event.stage == "warning":
            show_warning(event.message)
        if event.stage in STAGE_COLOURS:
            budget = 60.0 * float(self._minutes.value)
            frac = max(event.done / max(event.total, 1), event.elapsed_s / budget if budget else 0.0)
            self._progress.value = int(1000 * min(frac, 0.99))
            self.loss_plot.add_point(event.stage, event.done, event.loss)
            loss = "" if event.loss is None else f", loss {event.loss:.3f}"
            self._status.value = f"training ({event.stage}): iteration {event.done}{loss}"
        elif event.message:
            self._status.value = event.message

    def _on_result(self, model, name: str):
        if model is None:
            self._status.value = "cancelled: no new model; the base model is unchanged"
            return
        self._model = model
        register_model(name, model)
        self.loss_plot.refresh()
        self._progress.value = 1000
        self._save.enabled = True
        check = model.metadata.get("finetune_check") or {}
        if check.get("verdict") == "base":
            self._status.value = f"{name} is the base model, unchanged: fine-tuning did not help"
            show_warning(f"Fine-tuning made the model worse on this image, so {name!r} is the base model "
                         f"{model.metadata['base_model']['name']!r}, unchanged: {check['reason']}.")
            return
        self._status.value = f"{name} is ready in the Detect widget ({model.metadata['training']['seconds']} s)"
        compared = f" Compared with the base: {check['reason']}." if check.get("verdict") == "fine-tuned" else ""
        show_info(f"Fine-tuned model {name!r} added to the Detect widget's models.{compared}")

    def _on_error(self, exc: Exception):
        message = str(exc) if isinstance(exc, USER_ERRORS + (FinetuneFailed,)) else \
            f"{type(exc).__name__}: {exc}"
        show_error(f"Fine-tuning failed: {message}")
        self._status.value = f"failed: {message}"

    def _on_finished(self):
        self._worker = None
        self._train.enabled = True
        self._cancel.enabled = False

    # -- saving --------------------------------------------------------------------------------------
    def _on_save_clicked(self, _=None):
        if self._model is None:
            return
        from qtpy.QtWidgets import QFileDialog
        path, _ = QFileDialog.getSaveFileName(self.native, "Save the fine-tuned model",
                                              f"{self._model.name}.safetensors", "Model files (*.safetensors)")
        if path:
            self.save_model(path)

    def save_model(self, path: str | Path) -> Path | None:
        try:
            written = self._model.save(path)
        except USER_ERRORS as exc:  # e.g. disk full: nothing is left half-written
            show_error(f"Could not save the model: {exc}")
            return None
        self._status.value = f"saved {written.name}"
        return written
