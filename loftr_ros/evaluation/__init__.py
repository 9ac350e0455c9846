"""Homography accuracy of matchers: metrics, data sets (HPatches, held-out synthetic pairs),
OpenCV baselines (ORB, SIFT) and a runner that puts them in one table (``loftr-eval``)."""
