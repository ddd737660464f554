"""Device meshes, data/parameter sharding and multi-process start-up."""
