"""The ROS contract of loftr_ros in one place: node name, topics, services, parameters, schema.

Pure Python + numpy (no rclpy), so the README tables, the tests and the node all read the same
facts. The node builds its publishers, subscriptions and parameter descriptors from these lists;
``test/ros/test_ros_interface.py`` checks that the README and the config files agree with them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

import numpy as np

from loftr_ros.matching.postprocess import REFINEMENTS
from loftr_ros.model.presets import preset_names
from loftr_ros.runtime import BACKENDS

PACKAGE = "loftr_ros"
NODE_NAME = "loftr_matcher"
NODE_EXECUTABLE = "matcher_node"
PLAYER_NODE_NAME = "image_player"
PLAYER_EXECUTABLE = "image_player"

# ---------------------------------------------------------------------------------------------
# Topics and services

#: QoS kinds used below. ``image_qos`` means "chosen by the parameter of that name".
QOS_SENSOR_DATA = "sensor_data"          # best effort, keep last 1 (rclpy qos_profile_sensor_data)
QOS_RELIABLE = "reliable"                # reliable, volatile, keep last 1
QOS_SYSTEM_DEFAULT = "system_default"    # the RMW's default (reliable, keep last 10 in Fast DDS)
QOS_LATCHED = "latched"                  # reliable, transient local, keep last 1
QOS_FROM_PARAMETER = "image_qos"
IMAGE_QOS_CHOICES = (QOS_SENSOR_DATA, QOS_RELIABLE, QOS_SYSTEM_DEFAULT)

SUB = "sub"
PUB = "pub"
SRV = "srv"


@dataclass(frozen=True)
class TopicSpec:
    """One topic or service of the node.

    Attributes:
        kind: ``"sub"``, ``"pub"`` or ``"srv"``.
        name: ROS name as the node creates it (``~/`` = in the node's private namespace).
        msg_type: ``package/msg/Type`` or ``package/srv/Type``.
        qos: one of the ``QOS_*`` kinds above (services: ``"services_default"``).
        notes: one line for the README.
    """

    kind: str
    name: str
    msg_type: str
    qos: str
    notes: str


IMAGE_TOPIC = "image"
#: ``image_transport: compressed`` reads the ``image`` topic's resolved name plus this suffix,
#: as image_transport names it (``/cam/image_raw`` -> ``/cam/image_raw/compressed``).
COMPRESSED_SUFFIX = "/compressed"
CAMERA_INFO_TOPIC = "camera_info"
HOMOGRAPHY_TOPIC = "~/homography"
RELATIVE_POSE_TOPIC = "~/relative_pose"
SET_REFERENCE_SERVICE = "~/set_reference"
MATCHES_TOPIC = "~/matches"
DEBUG_IMAGE_TOPIC = "~/debug_image"
REFERENCE_IMAGE_TOPIC = "~/reference_image"
DIAGNOSTICS_TOPIC = "/diagnostics"

#: The debug image shrinks a frame whose longer side is larger to this many pixels (a 4000x3000
#: pair would otherwise make a 72 MB picture per frame).
DEBUG_IMAGE_MAX_SIDE = 1280

#: Depth of the matches publisher: consumers that fall behind for a few frames lose nothing.
MATCHES_QUEUE_DEPTH = 10

TOPICS: Tuple[TopicSpec, ...] = (
    TopicSpec(SUB, IMAGE_TOPIC, "sensor_msgs/msg/Image", QOS_FROM_PARAMETER,
              "camera frames; remap to the camera (launch argument `camera_topic`). Newest frame "
              "wins: frames arriving during inference replace the pending one (counted as "
              "dropped). Frames with a side under 32 px, empty, malformed or in an unsupported "
              "encoding are skipped (counted as rejected) with a throttled warning"),
    TopicSpec(SUB, IMAGE_TOPIC + COMPRESSED_SUFFIX, "sensor_msgs/msg/CompressedImage",
              QOS_FROM_PARAMETER,
              "instead of `image` when `image_transport: compressed`: the resolved `image` name "
              "plus `/compressed`, as image_transport names it (`camera_topic:=/cam/image_raw` "
              "reads `/cam/image_raw/compressed`); JPEG or PNG. A corrupt or truncated image, "
              "an unknown format or an empty message is skipped (counted as rejected) with a "
              "throttled warning"),
    TopicSpec(SUB, CAMERA_INFO_TOPIC, "sensor_msgs/msg/CameraInfo", QOS_SENSOR_DATA,
              "only with `estimate: essential`: the camera's intrinsics `K` and distortion `D` "
              "(plumb_bob, rational_polynomial); the reference keeps the ones received last "
              "before it was set (or the first after, if none had come). Missing, all-zero or "
              "for another image size: a throttled warning and no pose"),
    TopicSpec(SRV, SET_REFERENCE_SERVICE, "std_srvs/srv/Trigger", "services_default",
              "the newest received frame becomes the reference; fails with a clear message when "
              "no frame was received yet or the newest cannot be used (a frame that would be "
              "skipped, or a stamp with negative seconds, which the matches' UINT32 `ref_sec` "
              "cannot carry); the message names the reference stamp and size"),
    TopicSpec(PUB, MATCHES_TOPIC, "sensor_msgs/msg/PointCloud2", QOS_RELIABLE,
              "one message per processed frame (width N, N = 0 when nothing matched); fields in "
              "`MATCHES_FIELDS`; header = the current frame's header; keep last "
              f"{MATCHES_QUEUE_DEPTH}"),
    TopicSpec(PUB, HOMOGRAPHY_TOPIC, "std_msgs/msg/Float64MultiArray", QOS_RELIABLE,
              "`estimate: homography`: 9 values, row-major 3x3 (layout dims `rows` 3, `cols` 3), "
              "mapping reference pixels to current-frame pixels of the original frames; "
              "one per matched frame with at least `min_inliers` inliers, none when the "
              "estimate fails (counted on /diagnostics)"),
    TopicSpec(PUB, RELATIVE_POSE_TOPIC, "geometry_msgs/msg/PoseStamped", QOS_RELIABLE,
              "`estimate: essential`: the current camera's pose in the reference camera's "
              "optical frame (x right, y down, z forward); header stamp = the current frame's, "
              "`frame_id` = parameter `pose_frame_id` (empty: the reference image's); the "
              "translation has unit length (two views do not fix the scale); none without "
              "valid camera_info or with fewer than `min_inliers` inliers"),
    TopicSpec(PUB, DEBUG_IMAGE_TOPIC, "sensor_msgs/msg/Image", QOS_RELIABLE,
              "bgr8, reference | current side by side; every match a dot, at most "
              "`debug_max_lines` of them joined by lines spread over the frame, coloured by "
              "score (outliers of the estimate apart), a legend; overlay with count, FPS, "
              "latency, backend; a frame whose longer side exceeds "
              f"{DEBUG_IMAGE_MAX_SIDE} px is shrunk to it; drawn only while someone subscribes"),
    TopicSpec(PUB, REFERENCE_IMAGE_TOPIC, "sensor_msgs/msg/Image", QOS_LATCHED,
              "the current reference frame as received (latched: late subscribers get it)"),
    TopicSpec(PUB, DIAGNOSTICS_TOPIC, "diagnostic_msgs/msg/DiagnosticArray", QOS_RELIABLE,
              "every `diagnostics_period` s: rate, latency, dropped frames, errors, backend, "
              "model, reference age, inlier ratio and failed estimates, the camera's stamp rate "
              "and gaps in it; level ERROR with the reason when no model could be loaded "
              "or every frame failed, WARN without a reference, when frames were rejected or "
              "failed since the last report, when the last frame had no matches, when "
              "estimates failed since the last report, or when frames are lost before the "
              "node (the stamps' rate far below their spacing, or gaps)"),
)

# ---------------------------------------------------------------------------------------------
# Parameters

STRING = "string"
BOOL = "bool"
INTEGER = "integer"
DOUBLE = "double"

#: Marks a default that the node takes from the loaded model's preset at start-up.
FROM_MODEL = None


@dataclass(frozen=True)
class ParameterSpec:
    """One node parameter.

    Attributes:
        name: parameter name.
        type: ``"string"``, ``"bool"``, ``"integer"`` or ``"double"``.
        default: default value; ``None`` (``FROM_MODEL``) = taken from the model preset at start.
        description: one line for the descriptor and the README.
        range: ``(min, max, step)`` for numbers (step 0 = any value in the range), else None.
        choices: allowed values for strings, else None.
        read_only: a change needs a restart (declared read-only).
        dynamic: applied live by the node's parameter callback.
    """

    name: str
    type: str
    default: Any
    description: str
    range: Optional[Tuple[Any, Any, Any]] = None
    choices: Optional[Tuple[str, ...]] = None
    read_only: bool = True
    dynamic: bool = False

    @property
    def default_text(self) -> str:
        """The default as the README shows it."""
        if self.default is None:
            return "from model"
        if self.type == BOOL:
            return "true" if self.default else "false"
        if self.type == STRING:
            return f'"{self.default}"'
        return str(self.default)

    def check(self, value: Any) -> Optional[str]:
        """Return None when ``value`` is acceptable, else a one-line reason."""
        if self.choices is not None and value not in self.choices:
            return f"{self.name} must be one of {list(self.choices)}, not {value!r}"
        if self.range is not None and value is not None:
            low, high, _ = self.range
            if not low <= value <= high:
                return f"{self.name} must be in [{low}, {high}], not {value!r}"
        return None

    def from_text(self, text: str) -> Any:
        """The value a launch argument's ``text`` gives this parameter (bool: true/false, 1/0,
        yes/no, on/off); ValueError naming the parameter when the text does not fit."""
        try:
            if self.type == BOOL:
                value: Any = {"true": True, "1": True, "yes": True, "on": True, "false": False,
                              "0": False, "no": False, "off": False}[text.strip().lower()]
            elif self.type == INTEGER:
                value = int(text)
            elif self.type == DOUBLE:
                value = float(text)
            else:
                value = text
        except (KeyError, ValueError):
            raise ValueError(f"{self.name} is a {self.type} parameter; {text!r} is not "
                             "one") from None
        problem = self.check(value)
        if problem:
            raise ValueError(problem)
        return value


BACKEND_CHOICES = BACKENDS  # the runtime factory's names
ESTIMATE_NONE = "none"
ESTIMATE_HOMOGRAPHY = "homography"
ESTIMATE_ESSENTIAL = "essential"
ESTIMATE_CHOICES = (ESTIMATE_NONE, ESTIMATE_HOMOGRAPHY, ESTIMATE_ESSENTIAL)
TRANSPORT_RAW = "raw"
TRANSPORT_COMPRESSED = "compressed"
IMAGE_TRANSPORT_CHOICES = (TRANSPORT_RAW, TRANSPORT_COMPRESSED)
REFINEMENT_CHOICES = REFINEMENTS  # the post-processing's names

PARAMETERS: Tuple[ParameterSpec, ...] = (
    ParameterSpec("backend", STRING, "auto",
                  "inference engine: auto (tensorrt if usable, else onnxruntime), tensorrt, "
                  "onnxruntime or torch (only torch imports PyTorch)",
                  choices=BACKEND_CHOICES),
    ParameterSpec("weights", STRING, "",
                  "model file: .pt checkpoint (torch), .onnx (onnxruntime, tensorrt) or a TensorRT "
                  "engine; empty = the bundled default model"),
    ParameterSpec("preset", STRING, "",
                  "model preset name; empty = the one recorded in the weights",
                  choices=("",) + tuple(preset_names())),
    ParameterSpec("onnx_path", STRING, "",
                  "ONNX file for onnxruntime/tensorrt (wins over `weights` for them); empty = "
                  "`weights` (then an .onnx file or an engine for these backends), or the "
                  "bundled ONNX when `weights` is empty too"),
    ParameterSpec("engine_path", STRING, "",
                  "serialized TensorRT engine (wins over `onnx_path`); empty = built from the "
                  "ONNX model and cached in `engine_cache_dir`"),
    ParameterSpec("engine_cache_dir", STRING, "",
                  "where built TensorRT engines are cached; empty = ~/.cache/loftr_ros/engines"),
    ParameterSpec("fp16", BOOL, True, "build/run the TensorRT engine in FP16"),
    ParameterSpec("threads", INTEGER, 0,
                  "CPU threads of onnxruntime / torch; 0 = the library's default",
                  range=(0, 256, 0)),
    ParameterSpec("allow_backend_fallback", BOOL, False,
                  "if TensorRT cannot be used (not installed, no GPU, an ONNX it cannot build), "
                  "fall back to onnxruntime (logged) instead of running without a model; never "
                  "for an engine file"),
    ParameterSpec("input_width", INTEGER, 0,
                  "model input width in pixels (multiple of the coarse stride); 0 = from model",
                  range=(0, 4096, 0)),
    ParameterSpec("input_height", INTEGER, 0,
                  "model input height in pixels (multiple of the coarse stride); 0 = from model",
                  range=(0, 4096, 0)),
    ParameterSpec("threshold", DOUBLE, FROM_MODEL,
                  "confidence threshold of a match; default = the value calibrated for the model",
                  range=(0.0, 1.0, 0.0), read_only=False, dynamic=True),
    ParameterSpec("max_matches", INTEGER, 0,
                  "keep at most this many matches (highest scores); 0 = unlimited",
                  range=(0, 100000, 0), read_only=False, dynamic=True),
    ParameterSpec("min_peak_mass", DOUBLE, FROM_MODEL,
                  "fine stage: drop matches whose fine window holds less probability than this "
                  "around its peak; default = the value calibrated for the model, 0 = keep all",
                  range=(0.0, 1.0, 0.0), read_only=False, dynamic=True),
    ParameterSpec("keep_sharpest", INTEGER, FROM_MODEL,
                  "fine stage: the min_peak_mass filter never leaves fewer matches than this "
                  "while more exist (the sharpest are kept), so a low-texture view still gets "
                  "some; default = the value calibrated for the model, 0 = the limit alone "
                  "decides",
                  range=(0, 100000, 0), read_only=False, dynamic=True),
    ParameterSpec("verify_alignment", BOOL, False,
                  "photometric refinement: also drop the matches whose image patches it could "
                  "not align (never fewer than keep_sharpest while more exist): fewer, surer "
                  "matches",
                  read_only=False, dynamic=True),
    ParameterSpec("border_margin", INTEGER, FROM_MODEL,
                  "ignore matches within this many coarse cells of the image border",
                  range=(0, 16, 1), read_only=False, dynamic=True),
    ParameterSpec("refinement", STRING, "auto",
                  "sub-cell refinement: auto (= photometric), none, expectation (confidence "
                  "neighbours), fine (learned fine stage), photometric (fine or expectation, then "
                  "patch alignment to sub-pixel)",
                  choices=REFINEMENT_CHOICES),
    ParameterSpec("image_qos", STRING, QOS_SENSOR_DATA,
                  "QoS of the image subscription: sensor_data (best effort, depth 1), reliable "
                  "(depth 1) or system_default", choices=IMAGE_QOS_CHOICES),
    ParameterSpec("image_transport", STRING, TRANSPORT_RAW,
                  "raw: sensor_msgs/Image on `image`; compressed: sensor_msgs/CompressedImage "
                  "(JPEG, PNG) on the resolved `image` name plus `/compressed`",
                  choices=IMAGE_TRANSPORT_CHOICES),
    ParameterSpec("estimate", STRING, ESTIMATE_NONE,
                  "geometry from the matches (MAGSAC++): none, homography (~/homography) or "
                  "essential (~/relative_pose, needs camera_info); sets the matches' `inlier` "
                  "field", choices=ESTIMATE_CHOICES),
    ParameterSpec("estimate_threshold_px", DOUBLE, 3.0,
                  "MAGSAC++ threshold: the error in current-frame pixels under which a match "
                  "is an inlier", range=(0.1, 100.0, 0.0), read_only=False, dynamic=True),
    ParameterSpec("min_inliers", INTEGER, 15,
                  "fewest inliers for ~/homography or ~/relative_pose to be published; fewer "
                  "counts as a failed estimate", range=(5, 100000, 0), read_only=False,
                  dynamic=True),
    ParameterSpec("pose_frame_id", STRING, "",
                  "frame_id of ~/relative_pose; empty = the reference image's frame_id",
                  read_only=False, dynamic=True),
    ParameterSpec("auto_reference", BOOL, True,
                  "the first frame received becomes the reference (matches appear at once)",
                  read_only=False, dynamic=True),
    ParameterSpec("publish_debug_image", BOOL, True,
                  "draw and publish ~/debug_image (only while it has subscribers)",
                  read_only=False, dynamic=True),
    ParameterSpec("debug_max_lines", INTEGER, 150,
                  "~/debug_image: join at most this many matches by a line, chosen spread over "
                  "the reference frame (every match is a dot either way); 0 = dots only",
                  range=(0, 5000, 0), read_only=False, dynamic=True),
    ParameterSpec("diagnostics_period", DOUBLE, 1.0,
                  "seconds between /diagnostics messages", range=(0.1, 60.0, 0.0)),
)

PARAMETERS_BY_NAME = {spec.name: spec for spec in PARAMETERS}
DYNAMIC_PARAMETERS = tuple(spec.name for spec in PARAMETERS if spec.dynamic)

# ---------------------------------------------------------------------------------------------
# The ~/matches PointCloud2 schema

# sensor_msgs/msg/PointField datatype constants (fixed by the message definition).
POINTFIELD_FLOAT32 = 7
POINTFIELD_UINT32 = 6
POINTFIELD_UINT8 = 2
_POINTFIELD_NAMES = {POINTFIELD_FLOAT32: "FLOAT32", POINTFIELD_UINT32: "UINT32",
                     POINTFIELD_UINT8: "UINT8"}
_POINTFIELD_NUMPY = {POINTFIELD_FLOAT32: "<f4", POINTFIELD_UINT32: "<u4", POINTFIELD_UINT8: "u1"}


@dataclass(frozen=True)
class MatchField:
    """One PointCloud2 field of ``~/matches``.

    Attributes:
        name: field name.
        datatype: sensor_msgs/PointField datatype constant.
        offset: byte offset inside a row.
        meaning: one line for the README.
    """

    name: str
    datatype: int
    offset: int
    meaning: str

    @property
    def type_name(self) -> str:
        """``FLOAT32``, ``UINT32`` or ``UINT8``."""
        return _POINTFIELD_NAMES[self.datatype]


MATCHES_FIELDS: Tuple[MatchField, ...] = (
    MatchField("ref_u", POINTFIELD_FLOAT32, 0, "x of the match in the reference frame, pixels"),
    MatchField("ref_v", POINTFIELD_FLOAT32, 4, "y of the match in the reference frame, pixels"),
    MatchField("cur_u", POINTFIELD_FLOAT32, 8, "x of the match in the current frame, pixels"),
    MatchField("cur_v", POINTFIELD_FLOAT32, 12, "y of the match in the current frame, pixels"),
    MatchField("score", POINTFIELD_FLOAT32, 16, "match confidence in [0, 1]"),
    MatchField("ref_sec", POINTFIELD_UINT32, 20, "reference frame stamp, seconds (every row)"),
    MatchField("ref_nanosec", POINTFIELD_UINT32, 24,
               "reference frame stamp, nanoseconds (every row)"),
    MatchField("inlier", POINTFIELD_UINT8, 28,
               "1 where the estimated geometry (`estimate`) accepts the match, else 0; 1 for "
               "every match with `estimate: none`"),
)
#: 29 bytes of fields, padded to 32 so that every row's floats stay 4-byte aligned.
MATCHES_POINT_STEP = 32
MATCHES_IS_BIGENDIAN = False

#: numpy dtype of one row (little endian, packed, same offsets as MATCHES_FIELDS).
MATCHES_DTYPE = np.dtype({
    "names": [f.name for f in MATCHES_FIELDS],
    "formats": [_POINTFIELD_NUMPY[f.datatype] for f in MATCHES_FIELDS],
    "offsets": [f.offset for f in MATCHES_FIELDS],
    "itemsize": MATCHES_POINT_STEP,
})

# ---------------------------------------------------------------------------------------------
# /diagnostics

DIAGNOSTIC_NAME = f"{NODE_NAME}: matcher"
DIAGNOSTIC_HARDWARE_ID = PACKAGE

#: Keys of the DiagnosticStatus values (all strings, as the message requires).
DIAG_BACKEND = "backend"
DIAG_MODEL = "model"
DIAG_RATE = "processing rate (Hz)"
DIAG_LATENCY = "latency mean (ms)"
DIAG_INFERENCE = "inference mean (ms)"
DIAG_MATCHER = "matcher mean (ms)"
DIAG_RECEIVED = "frames received"
DIAG_PROCESSED = "frames processed"
DIAG_DROPPED = "frames dropped"
DIAG_REJECTED = "frames rejected"
DIAG_ERRORS = "processing errors"
DIAG_REFERENCE_AGE = "reference age (s)"
DIAG_MATCHES = "matches last"
DIAG_DEBUG_IMAGES = "debug images published"
DIAG_TORCH_LOADED = "torch loaded"
DIAG_ESTIMATE = "estimate"
DIAG_INLIER_RATIO = "inlier ratio last"
DIAG_ESTIMATE_FAILED = "estimates failed"
DIAG_ESTIMATE_TIME = "estimate mean (ms)"
DIAG_STAMP_RATE = "camera stamp rate (Hz)"
DIAG_ARRIVAL_RATE = "frames arriving (Hz)"
DIAG_STAMP_GAPS = "stamp gaps"
DIAGNOSTIC_KEYS = (DIAG_BACKEND, DIAG_MODEL, DIAG_RATE, DIAG_LATENCY, DIAG_INFERENCE, DIAG_MATCHER,
                   DIAG_RECEIVED, DIAG_PROCESSED, DIAG_DROPPED, DIAG_REJECTED, DIAG_ERRORS,
                   DIAG_REFERENCE_AGE, DIAG_MATCHES, DIAG_DEBUG_IMAGES, DIAG_TORCH_LOADED,
                   DIAG_ESTIMATE, DIAG_INLIER_RATIO, DIAG_ESTIMATE_FAILED, DIAG_ESTIMATE_TIME,
                   DIAG_STAMP_RATE, DIAG_ARRIVAL_RATE, DIAG_STAMP_GAPS)

__all__ = [
    "PACKAGE", "NODE_NAME", "NODE_EXECUTABLE", "PLAYER_EXECUTABLE", "TopicSpec", "TOPICS",
    "ParameterSpec", "PARAMETERS", "PARAMETERS_BY_NAME", "DYNAMIC_PARAMETERS", "MatchField",
    "MATCHES_FIELDS", "MATCHES_DTYPE", "MATCHES_POINT_STEP", "MATCHES_IS_BIGENDIAN",
    "IMAGE_TOPIC", "SET_REFERENCE_SERVICE", "MATCHES_TOPIC", "DEBUG_IMAGE_TOPIC",
    "REFERENCE_IMAGE_TOPIC", "DIAGNOSTICS_TOPIC", "HOMOGRAPHY_TOPIC", "RELATIVE_POSE_TOPIC",
    "CAMERA_INFO_TOPIC", "COMPRESSED_SUFFIX", "ESTIMATE_CHOICES", "DIAGNOSTIC_KEYS",
    "DEBUG_IMAGE_MAX_SIDE",
]
