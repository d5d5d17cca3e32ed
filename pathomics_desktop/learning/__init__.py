"""Patch classifiers, Qt-free (torch/timm imported lazily inside functions).

* :mod:`.backbones` - ``create_backbone(name, num_classes, pretrained_weights=None)`` for
  resnet18/resnet50/densenet121 (timm, never downloaded) and crossformer_t/s/b/l; local
  weights (torch ``weights_only`` or safetensors) with the classifier head skipped when its
  class count differs (:class:`WeightLoadReport`).
* :mod:`.crossformer` - CrossFormer (Wang et al., ICLR 2022) written from the paper, with the
  official checkpoint layout; any input size.
* :mod:`.complexity` - parameter and multiply-accumulate counts (``pathomics models info``).
* :mod:`.preprocess` - uint8 tiles -> standardised tensors, study augmentation, TileDataset.
* :mod:`.training` - resumable, cancellable fine-tuning with the study presets.
* :mod:`.inference` - tile batches -> class probabilities.
* :mod:`.gradcam` - Grad-CAM / HiResCAM tile heatmaps, overlays, slide probability maps.
* :mod:`.bench` - ``pathomics bench inference``.
"""
