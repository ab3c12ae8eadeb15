"""The data: PlantVillage's download, the grouped split manifest, image loading and caches, the photo sets."""
