"""Whole-slide pipeline (no Qt): reader and metadata, ROIs, tissue mask, tiling, stain.

Modules (heavy libraries are imported inside functions):

* :mod:`.reader` - ``read_slide_metadata(path, *, mpp_override=None) -> SlideMetadata``,
  ``check_mpp(mpp_x, mpp_y, objective_power)``, ``apply_mpp_override``, ``require_mpp``,
  ``sha256_file(path, chunk)``, ``open_slide(path)``.
* :mod:`.roi` - QuPath GeoJSON: ``load_rois``, ``parse_rois``, ``roi_coverage``,
  ``rois_to_geojson``, ``tiles_to_geojson``, ``write_geojson``.
* :mod:`.tissue` - ``TissueMaskParams``, ``compute_tissue_mask``, ``tissue_mask_from_rgb``,
  ``white_fraction``.
* :mod:`.fastread` - ``JpegTiffReader`` (parallel stored-JPEG-tile decoding).
* :mod:`.tiling` - ``TilingParams``, ``tile_slide``, ``tile_slides``, ``read_tile_index``,
  ``iter_tile_batches``, ``SlideTileSource``, ``export_tile_grid_geojson``.
* :mod:`.stain` - torch Macenko/Reinhard: ``macenko_normalize``, ``fit_macenko``,
  ``estimate_stains``, ``builtin_reference``, ``reinhard_normalize``, ``fit_reinhard``.
* :mod:`.preprocess` - ``standardize`` (z-score), ``augment`` (random crop + flips).
* :mod:`.cli` - ``pathomics slides info`` and ``pathomics tile``; :mod:`.bench` -
  ``pathomics bench tiling``.
"""
