"""Synthetic image pairs with known geometry (numpy/OpenCV, no torch): planar homographies,
virtual camera sequences and 3D scenes."""
