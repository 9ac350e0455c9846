"""The ``~/matches`` PointCloud2: build one from matches, read one back into numpy.

The schema is :data:`loftr_ros.ros.interface.MATCHES_FIELDS` (height 1, width N, little endian,
32-byte rows). Plain numpy structured arrays do the packing, because ``sensor_msgs_py`` is not on
PyPI. Reading is generic over PointField offsets, ``point_step``, ``row_step`` and byte order, so it
also reads clouds written by other tools.

Example (a consumer node)::

    from loftr_ros.ros.matches_msg import matches_from_msg
    def on_matches(msg):
        m = matches_from_msg(msg)        # m.ref [N,2], m.cur [N,2], m.scores [N] (pixels, [0,1])
        trusted = m.cur[m.inliers]       # matches the node's geometry (`estimate`) accepts
"""
from __future__ import annotations

import array
from typing import Any, NamedTuple, Optional, Tuple

import numpy as np

from loftr_ros.ros.interface import (
    MATCHES_DTYPE,
    MATCHES_FIELDS,
    MATCHES_POINT_STEP,
    POINTFIELD_FLOAT32,
    POINTFIELD_UINT8,
)

# sensor_msgs/PointField datatype -> numpy type (the message definition's constants).
_POINTFIELD_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4",
                      POINTFIELD_FLOAT32: "f4", 8: "f8"}


class MatchesMsgError(ValueError):
    """A PointCloud2 that does not carry the ``~/matches`` schema or is inconsistent."""


class MatchesArrays(NamedTuple):
    """Matches read back from a message.

    Attributes:
        ref: float32 ``[N, 2]`` pixel coordinates (u, v) in the reference frame.
        cur: float32 ``[N, 2]`` pixel coordinates (u, v) in the current frame.
        scores: float32 ``[N]`` confidences in [0, 1].
        ref_stamp: ``(sec, nanosec)`` of the reference frame, or None when N = 0.
        inliers: bool ``[N]``, the ``inlier`` field: True where the node's estimated geometry
            accepts the match (every match with ``estimate: none``).
    """

    ref: np.ndarray
    cur: np.ndarray
    scores: np.ndarray
    ref_stamp: Optional[Tuple[int, int]]
    inliers: np.ndarray


def pack_matches(keypoints_ref: np.ndarray, keypoints_cur: np.ndarray, scores: np.ndarray,
                 ref_stamp: Tuple[int, int], inliers: Optional[np.ndarray] = None) -> np.ndarray:
    """Pack matches into rows of :data:`MATCHES_DTYPE`.

    Args:
        keypoints_ref: ``[N, 2]`` pixel coordinates in the reference frame.
        keypoints_cur: ``[N, 2]`` pixel coordinates in the current frame.
        scores: ``[N]`` confidences.
        ref_stamp: ``(sec, nanosec)`` of the reference frame.
        inliers: bool ``[N]`` flags of the estimated geometry; None = every match (1).
    """
    keypoints_ref = np.asarray(keypoints_ref, np.float32).reshape(-1, 2)
    keypoints_cur = np.asarray(keypoints_cur, np.float32).reshape(-1, 2)
    scores = np.asarray(scores, np.float32).reshape(-1)
    count = len(scores)
    flags = np.ones(count, bool) if inliers is None else np.asarray(inliers, bool).reshape(-1)
    if len(keypoints_ref) != count or len(keypoints_cur) != count or len(flags) != count:
        raise MatchesMsgError(
            f"inconsistent match arrays: {len(keypoints_ref)} ref, {len(keypoints_cur)} cur, "
            f"{count} scores, {len(flags)} inlier flags")
    rows = np.zeros(count, MATCHES_DTYPE)
    rows["ref_u"], rows["ref_v"] = keypoints_ref[:, 0], keypoints_ref[:, 1]
    rows["cur_u"], rows["cur_v"] = keypoints_cur[:, 0], keypoints_cur[:, 1]
    rows["score"] = scores
    rows["ref_sec"] = int(ref_stamp[0])
    rows["ref_nanosec"] = int(ref_stamp[1])
    rows["inlier"] = flags
    return rows


def matches_to_msg(keypoints_ref: np.ndarray, keypoints_cur: np.ndarray, scores: np.ndarray,
                   header: Any, ref_stamp: Tuple[int, int], msg: Any = None,
                   inliers: Optional[np.ndarray] = None) -> Any:
    """Build the ``~/matches`` sensor_msgs/PointCloud2.

    Args:
        keypoints_ref, keypoints_cur, scores, ref_stamp, inliers: as :func:`pack_matches`.
        header: the current frame's std_msgs/Header (copied into the message).
        msg: an object to fill instead of a new PointCloud2 (for tests without rclpy).
    """
    rows = pack_matches(keypoints_ref, keypoints_cur, scores, ref_stamp, inliers)
    if msg is None:
        from sensor_msgs.msg import PointCloud2

        msg = PointCloud2()
    msg.header = header
    msg.height = 1
    msg.width = len(rows)
    msg.fields = _point_fields()
    msg.is_bigendian = False
    msg.point_step = MATCHES_POINT_STEP
    msg.row_step = MATCHES_POINT_STEP * len(rows)
    msg.data = array.array("B", rows.tobytes())
    msg.is_dense = True
    return msg


def matches_msg_from(matches: Any, header: Any, ref_stamp: Tuple[int, int],
                     inliers: Optional[np.ndarray] = None) -> Any:
    """:func:`matches_to_msg` for a ``Matches`` result of ``Matcher.match(reference, current)``
    (``keypoints0`` = reference, ``keypoints1`` = current)."""
    return matches_to_msg(matches.keypoints0, matches.keypoints1, matches.scores, header,
                          ref_stamp, inliers=inliers)


def _point_fields() -> list:
    from sensor_msgs.msg import PointField

    return [PointField(name=f.name, offset=f.offset, datatype=f.datatype, count=1)
            for f in MATCHES_FIELDS]


def read_points(msg: Any) -> np.ndarray:
    """Read any PointCloud2's points as a structured array (one field per PointField, count 1).

    Honours ``point_step``, ``row_step`` padding, ``height`` and ``is_bigendian``; the result is
    in native byte order, one entry per point (``height * width``).
    """
    if not msg.fields:
        raise MatchesMsgError("PointCloud2 has no fields")
    order = ">" if msg.is_bigendian else "<"
    names, formats, offsets = [], [], []
    for field in msg.fields:
        if field.datatype not in _POINTFIELD_DTYPES:
            raise MatchesMsgError(f"field {field.name!r} has unknown datatype {field.datatype}")
        if field.count != 1:
            raise MatchesMsgError(f"field {field.name!r} has count {field.count}, expected 1")
        names.append(field.name)
        formats.append(order + _POINTFIELD_DTYPES[field.datatype])
        offsets.append(field.offset)
    point_step = int(msg.point_step)
    if point_step <= 0 or max(o + np.dtype(f).itemsize for o, f in zip(offsets, formats)) \
            > point_step:
        raise MatchesMsgError(f"point_step {point_step} is smaller than the fields need")
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets,
                      "itemsize": point_step})
    height, width, row_step = int(msg.height), int(msg.width), int(msg.row_step)
    if height * width == 0:
        return np.zeros(0, dtype.newbyteorder("="))
    if row_step < width * point_step:
        raise MatchesMsgError(f"row_step {row_step} < width x point_step = {width * point_step}")
    data = np.frombuffer(msg.data, np.uint8)
    if len(data) < row_step * height:
        raise MatchesMsgError(
            f"data has {len(data)} bytes, row_step x height = {row_step * height} needed")
    rows = data[:row_step * height].reshape(height, row_step)[:, :width * point_step]
    points = np.ascontiguousarray(rows).view(dtype).reshape(-1)
    native = np.dtype({"names": names, "formats": [f[1:] for f in formats]})
    out = np.empty(len(points), native)
    for name in names:
        out[name] = points[name]
    return out


def matches_from_msg(msg: Any) -> MatchesArrays:
    """Read a ``~/matches`` message back (checks the field names and types of the schema)."""
    expected = {f.name: f.datatype for f in MATCHES_FIELDS}
    present = {f.name: f.datatype for f in msg.fields}
    for name, datatype in expected.items():
        if present.get(name) != datatype:
            kind = {POINTFIELD_FLOAT32: "FLOAT32", POINTFIELD_UINT8: "UINT8"}.get(datatype,
                                                                                "UINT32")
            raise MatchesMsgError(
                f"not a loftr_ros matches cloud: field {name!r} missing or not {kind}")
    points = read_points(msg)
    ref = np.stack([points["ref_u"], points["ref_v"]], axis=1).astype(np.float32)
    cur = np.stack([points["cur_u"], points["cur_v"]], axis=1).astype(np.float32)
    scores = points["score"].astype(np.float32)
    stamp = None
    if len(points):
        stamp = (int(points["ref_sec"][0]), int(points["ref_nanosec"][0]))
    return MatchesArrays(ref=ref.reshape(-1, 2), cur=cur.reshape(-1, 2), scores=scores,
                         ref_stamp=stamp, inliers=points["inlier"].astype(bool))


__all__ = ["MatchesArrays", "MatchesMsgError", "matches_from_msg", "matches_msg_from",
           "matches_to_msg", "pack_matches", "read_points"]
