"""The Detect widget's controls, in the order shown, with the words people read; no behaviour."""
from __future__ import annotations

from qtpy.QtWidgets import QSizePolicy
from magicgui.widgets import (ComboBox, FloatSlider, FloatSpinBox, Label, ProgressBar, PushButton, SpinBox,
                              create_widget)

from ..io import READABLE_FORMATS
from ..models.data_range import MODES as INTENSITY_MODES
from ..pipeline.self_calibration import CALIBRATIONS, DEFAULT_CALIBRATION
from ..pipeline.sensitivity import DEFAULT_FPR, describe_default_fprs
from ..supn.devices import DEVICE_CHOICES
from .detect_state import DetectState
from .layers import channel_choices


class DetectForm:
    """Menus list what ``state`` offers. Their choices are callables because napari resets every
    combo box of a dock widget when layers change."""

    def __init__(self, state: DetectState):
        self.image = create_widget(annotation="napari.layers.Image", label="image")
        self.image.tooltip = "The field or stack to analyse."
        self.open = PushButton(text="Open stack…", tooltip=f"Open an image or stack ({READABLE_FORMATS}) and confirm "
                                                            "its axes.")
        self.cells = create_widget(annotation="napari.layers.Labels", label="cell labels",
                                   options={"nullable": True})
        self.cells.tooltip = ("Optional: cells found by another tool (e.g. cellpose). Empty: the plugin "
                              "finds the cells itself.")
        self.channel = ComboBox(label="channel", choices=lambda _w: channel_choices(self.image.value, state.model),
                                tooltip="The channel the model looks at.")
        self.model = ComboBox(label="model", choices=lambda _w: state.model_choices(),
                              tooltip="Built-in models, models of this session (e.g. fine-tuned), or a file.")
        self.load_model = PushButton(text="Load model file…", tooltip="Use a model saved to a file (.safetensors).")
        self.model_info = Label(value="")
        self.scorer = ComboBox(label="scorer", choices=lambda _w: state.scorer_choices(),
                               tooltip="How a cell's anomaly score is made: the model's own residual, or one of "
                                       "the seed papers' scorers this model is calibrated for.")
        self.scorer_info = Label(value="")
        self.load_network = PushButton(text="Scorer network…",
                                       tooltip="Add a self-supervised scorer (ssl-*): load its trained network, "
                                               "made for this model by 'supn-anomaly train-scorer'.")
        self.device = ComboBox(label="device", choices=list(DEVICE_CHOICES), value="auto",
                               tooltip="auto: an NVIDIA or Apple GPU when present, else the CPU.")
        self.device_info = Label(value="")
        self.diameter = FloatSpinBox(label="cell diameter (px)", value=0.0, min=0.0, max=2000.0, step=1.0,
                                     tooltip="Diameter of the cells in this image, in pixels. 0: measure it "
                                             "from the cells found. The field is rescaled so cells match "
                                             "the size the model was trained on.")
        self.intensity = ComboBox(label="intensity", choices=list(INTENSITY_MODES), value="auto",
                                  tooltip="auto: bring the image to the model's intensity range only when it is "
                                          "clearly off (e.g. a 12- or 16-bit camera), and a stained smear to the "
                                          "stain of the model's training cells when its colours differ; "
                                          "match: always; off: never.")
        self.run = PushButton(text="Run")
        self.cancel = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="progress", min=0, max=1000, value=0)
        self.sensitivity = FloatSlider(label="healthy cells flagged (%)", min=0.1, max=20.0, step=0.1,
                                       value=100 * DEFAULT_FPR,
                                       tooltip="Sensitivity: the share of healthy cells that would be flagged "
                                               "(5 means about 5 false candidates per 100 healthy cells). It "
                                               f"starts at the model's default: {describe_default_fprs()}. "
                                               "Moving it re-thresholds the candidates without running the model.")
        self.calibration = ComboBox(label="calibrate on", choices=list(CALIBRATIONS), value=DEFAULT_CALIBRATION,
                                    tooltip="slide: set the threshold on this image's own cells (most cells of a "
                                            "smear are healthy), so another lab's stain or camera does not flag "
                                            "every cell; a stack counts as one slide. model: on the healthy cells "
                                            "the model was trained on. With too few cells the model's is used, "
                                            "moved to where this image's cells score.")
        self.min_area = SpinBox(label="smallest region (px)", value=1, min=1, max=100000,
                                tooltip="Candidate regions smaller than this are dropped (re-cut without "
                                        "running the model).")
        self.threshold_info = Label(value="")
        self.status = Label(value="")
        for info in (self.model_info, self.scorer_info, self.device_info, self.threshold_info, self.status):
            info.native.setWordWrap(True)
        for info in (self.threshold_info, self.status):
            # the last two lines can run to several wrapped lines: they take the room left below,
            # so a long status never runs over the line above
            info.native.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.MinimumExpanding)

    def widgets(self) -> list:
        return [self.image, self.open, self.cells, self.channel, self.model, self.load_model, self.model_info,
                self.scorer, self.scorer_info, self.load_network, self.device, self.device_info, self.diameter,
                self.intensity, self.run, self.cancel, self.progress, self.sensitivity, self.calibration,
                self.min_area,
                self.threshold_info, self.status]
