"""Installs gan_lib (DCGAN training on MNIST) and metrics (GAN evaluation)."""

import setuptools

# TensorFlow 2.21 is the release the tests run on. Older 2.x releases are not tested.
INSTALL_REQUIRES = [
    "tensorflow>=2.21,<2.22",
    "tensorflow-datasets>=4.9.10,<5",
    "importlib_resources",  # tensorflow-datasets imports it lazily when it downloads
    "tensorboard>=2.21,<2.22",
    "absl-py>=2.1",
    "numpy>=1.26",
    "scipy>=1.11",
    "pillow>=10",
    "matplotlib>=3.8",
    "tqdm>=4.66",
    "optuna>=4",  # gan_lib.search: samplers, pruners and the SQLite or PostgreSQL study
    "PyYAML>=5.1",  # gan_lib.search reads YAML search spaces
]

EXTRAS_REQUIRE = {
    "test": [
        "pytest>=8",
        "hypothesis>=6.100",
        "psycopg2-binary",
    ],
    # A study shared through a PostgreSQL server (--storage=postgresql://...).
    "postgres": [
        "psycopg2-binary",
    ],
}

setuptools.setup(
    name="gan_lib",
    version="0.1.0",
    description="Low-level TensorFlow 2 DCGAN training and evaluation on MNIST",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["gan_lib", "gan_lib.*", "metrics", "metrics.*"]),
    package_data={"metrics": ["weights/*"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
)
