"""napari-supn-anomaly: find malaria parasites as what a model of healthy red cells cannot explain."""
__version__ = "0.1.0"
