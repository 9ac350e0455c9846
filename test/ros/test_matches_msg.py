"""The ~/matches PointCloud2: schema, packing, reading back (also foreign layouts)."""
import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="sensor_msgs (ROS 2 wheels) not installed")

from sensor_msgs.msg import PointCloud2, PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from loftr_ros.ros.interface import MATCHES_FIELDS, MATCHES_POINT_STEP  # noqa: E402
from loftr_ros.ros.matches_msg import (  # noqa: E402
    MatchesMsgError,
    matches_from_msg,
    matches_to_msg,
    pack_matches,
    read_points,
)


def make(count=5, seed=0):
    rng = np.random.default_rng(seed)
    ref = rng.uniform(0, 640, (count, 2)).astype(np.float32)
    cur = rng.uniform(0, 480, (count, 2)).astype(np.float32)
    scores = rng.uniform(0, 1, count).astype(np.float32)
    header = Header(frame_id="camera")
    header.stamp.sec, header.stamp.nanosec = 100, 200
    return ref, cur, scores, header


def test_schema_matches_design():
    ref, cur, scores, header = make()
    msg = matches_to_msg(ref, cur, scores, header, (7, 8))
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("ref_u", 0, PointField.FLOAT32, 1), ("ref_v", 4, PointField.FLOAT32, 1),
        ("cur_u", 8, PointField.FLOAT32, 1), ("cur_v", 12, PointField.FLOAT32, 1),
        ("score", 16, PointField.FLOAT32, 1), ("ref_sec", 20, PointField.UINT32, 1),
        ("ref_nanosec", 24, PointField.UINT32, 1), ("inlier", 28, PointField.UINT8, 1)]
    assert [f.name for f in MATCHES_FIELDS] == [f.name for f in msg.fields]
    assert (msg.height, msg.width, msg.point_step) == (1, 5, MATCHES_POINT_STEP)
    assert msg.row_step == 5 * MATCHES_POINT_STEP and len(msg.data) == msg.row_step
    assert msg.is_bigendian is False and msg.is_dense is True
    assert msg.header.frame_id == "camera" and msg.header.stamp.sec == 100


def test_round_trip():
    ref, cur, scores, header = make(50)
    back = matches_from_msg(matches_to_msg(ref, cur, scores, header, (7, 999_999_999)))
    np.testing.assert_array_equal(back.ref, ref)
    np.testing.assert_array_equal(back.cur, cur)
    np.testing.assert_array_equal(back.scores, scores)
    assert back.ref_stamp == (7, 999_999_999)
    assert back.inliers.dtype == bool and back.inliers.all(), "no geometry: every match is 1"


def test_inlier_flags_round_trip():
    ref, cur, scores, header = make(6)
    flags = np.array([1, 0, 1, 1, 0, 0], bool)
    msg = matches_to_msg(ref, cur, scores, header, (7, 8), inliers=flags)
    np.testing.assert_array_equal(matches_from_msg(msg).inliers, flags)
    raw = np.frombuffer(bytes(msg.data), np.uint8).reshape(6, MATCHES_POINT_STEP)
    np.testing.assert_array_equal(raw[:, 28], flags.astype(np.uint8))
    with pytest.raises(MatchesMsgError, match="inlier flags"):
        pack_matches(ref, cur, scores, (0, 0), inliers=flags[:5])


def test_empty_matches():
    msg = matches_to_msg(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0), Header(), (1, 2))
    assert msg.width == 0 and len(msg.data) == 0 and len(msg.fields) == 8
    back = matches_from_msg(msg)
    assert back.ref.shape == (0, 2) and back.scores.shape == (0,) and back.ref_stamp is None
    assert back.inliers.shape == (0,)


def test_inconsistent_lengths():
    with pytest.raises(MatchesMsgError, match="inconsistent"):
        pack_matches(np.zeros((3, 2)), np.zeros((2, 2)), np.zeros(3), (0, 0))


def test_reads_foreign_layout_big_endian_padded():
    """A cloud with another field order, padding inside points and rows, big endian."""
    rows = np.zeros((2, 3), dtype=np.dtype({
        "names": ["score", "cur_u", "cur_v", "ref_u", "ref_v", "ref_sec", "ref_nanosec",
                  "inlier"],
        "formats": [">f4", ">f4", ">f4", ">f4", ">f4", ">u4", ">u4", "u1"],
        "offsets": [0, 8, 12, 16, 20, 24, 28, 4], "itemsize": 36}))
    rows["score"] = 0.5
    rows["ref_u"] = np.arange(6).reshape(2, 3)
    rows["ref_sec"] = 42
    rows["inlier"] = [[1, 0, 1], [0, 0, 1]]
    raw = np.concatenate([rows.view(np.uint8).reshape(2, -1), np.zeros((2, 4), np.uint8)], axis=1)
    msg = PointCloud2(height=2, width=3, is_bigendian=True, point_step=36, row_step=3 * 36 + 4)
    msg.fields = [PointField(name=n, offset=o, datatype=d, count=1) for n, o, d in [
        ("score", 0, 7), ("cur_u", 8, 7), ("cur_v", 12, 7), ("ref_u", 16, 7), ("ref_v", 20, 7),
        ("ref_sec", 24, 6), ("ref_nanosec", 28, 6), ("inlier", 4, 2)]]
    msg.data = raw.tobytes()
    back = matches_from_msg(msg)
    np.testing.assert_array_equal(back.ref[:, 0], np.arange(6))
    assert np.all(back.scores == 0.5) and back.ref_stamp == (42, 0)
    assert back.inliers.tolist() == [True, False, True, False, False, True]


def test_rejects_other_clouds():
    msg = PointCloud2(height=1, width=0, point_step=12, row_step=0)
    msg.fields = [PointField(name=n, offset=4 * i, datatype=7, count=1)
                  for i, n in enumerate("xyz")]
    with pytest.raises(MatchesMsgError, match="ref_u"):
        matches_from_msg(msg)
    assert read_points(msg).shape == (0,)
    msg.width, msg.row_step, msg.data = 2, 24, bytes(10)
    with pytest.raises(MatchesMsgError, match="bytes"):
        read_points(msg)
