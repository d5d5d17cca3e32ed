"""Pathomics Desktop: registry, whole-slide pipeline, patch models and survival statistics
for multi-center pathomics survival studies.

Only :mod:`pathomics_desktop.ui` imports Qt; everything else runs headless.
"""

__version__ = "0.1.0"
