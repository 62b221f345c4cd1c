"""Split models: `SplitModel(arch, cut, num_classes, rngs=...)` with `.extractor` and `.head`."""

from privjax.models.vgg import (
    ARCHITECTURES,
    SplitModel,
    build_head,
    check_cut,
    feature_shape,
    get_architecture,
    layer_params,
    load_layer_params,
    model_from_config,
)
