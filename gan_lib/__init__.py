"""DCGAN training on MNIST with a low-level TensorFlow 2 train step."""
