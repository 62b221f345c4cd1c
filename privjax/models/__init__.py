"""Split models: `SplitModel(arch, cut, num_classes, rngs=...)` with `.extractor` and `.head`.

Nothing in this package may import privjax.train, privjax.data or privjax.config: models sit below
them (their errors come from privjax.errors).
"""

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
