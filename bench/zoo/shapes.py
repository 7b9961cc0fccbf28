"""The zoo's names and input shapes, without torch.

models.py builds the nets from these; bench_zoo.py reads them here so that a
checkout without torch still runs the ONNX files already in .cache (and says
what it cannot export).
"""
# name -> (per-sample input shape, --quick input shape, family)
SHAPES = {
    "resnet18": ((3, 224, 224), (3, 112, 112), "image"),
    "resnet50": ((3, 224, 224), (3, 112, 112), "image"),
    "mobilenet_v2": ((3, 224, 224), (3, 112, 112), "image"),
    "mobilenet_v3_large": ((3, 224, 224), (3, 112, 112), "image"),
    "efficientnet_b0": ((3, 224, 224), (3, 112, 112), "image"),
    "squeezenet1_1": ((3, 224, 224), (3, 112, 112), "image"),
    "shufflenet_v2": ((3, 224, 224), (3, 112, 112), "image"),
    "densenet121": ((3, 224, 224), (3, 112, 112), "image"),
    "googlenet": ((3, 224, 224), (3, 112, 112), "image"),
    # AdaptiveAvgPool2d(7) exports only where the map divides: 224 in both modes
    "vgg16": ((3, 224, 224), (3, 224, 224), "image"),
    "unet": ((3, 256, 256), (3, 128, 128), "dense"),
    "dbnet_mv3": ((3, 640, 640), (3, 320, 320), "dense"),
    "m5_audio": ((1, 16000), (1, 16000), "audio"),
}

# CIFAR forms for the training-step comparison (32x32, 10 classes)
TRAIN_SHAPES = {
    "resnet18_cifar": (3, 32, 32),
    "mobilenet_v2_cifar": (3, 32, 32),
}
