"""ROS 2 node ``loftr_matcher``: match every new frame against a reference keyframe.

Topics, services and parameters are listed in :mod:`loftr_ros.ros.interface` (the README tables
come from there). Threads: the executor runs the callbacks (image, service, parameters,
diagnostics timer); one worker thread runs inference. The image callback only stores the message
in a :class:`~loftr_ros.ros.frame_pipeline.NewestFrameSlot`, so frames arriving during inference
replace the pending one (counted as dropped) and are never queued.

A model that cannot be loaded (missing or corrupt weights, an engine built for another GPU or
TensorRT version, an unusable backend) does not stop the node: it logs why, reports it on
``/diagnostics`` (level ERROR), fails ``set_reference`` with the reason and ignores frames until it
is restarted with working model parameters. So does an input size the model file was not
exported for (only the model can judge it). A value outside its parameter's declared type, range
or choices stops the start-up instead (one line, exit 2).

Never imports torch unless ``backend`` is ``torch`` (a Jetson Nano has 2 GB for CPU and GPU);
``/diagnostics`` reports whether torch is loaded, from this process's ``sys.modules``.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.exceptions import (
    InvalidParameterTypeException,
    InvalidParameterValueException,
    ParameterException,
)
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_system_default,
)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from loftr_ros.ros import interface as api
from loftr_ros.ros.compressed_image import compressed_msg_to_matching_image
from loftr_ros.ros.frame_pipeline import FrameTiming, NewestFrameSlot, PipelineStats, Reference
from loftr_ros.ros.geometry_outputs import (
    CameraModel,
    FrameGeometry,
    camera_model_from_info,
    estimate_frame_geometry,
    homography_msg,
    pose_msg,
)
from loftr_ros.ros.image_conversion import ImageConversionError, ImageConverter, array_to_image_msg
from loftr_ros.ros.matches_msg import matches_to_msg
from loftr_ros.ros.stamp_monitor import StampMonitor

_ROS_TYPES = {api.STRING: ParameterType.PARAMETER_STRING, api.BOOL: ParameterType.PARAMETER_BOOL,
              api.INTEGER: ParameterType.PARAMETER_INTEGER,
              api.DOUBLE: ParameterType.PARAMETER_DOUBLE}
_LOG_THROTTLE_S = 5.0
#: live parameters that are settings of the Matcher (same names)
_MATCHER_PARAMETERS = ("threshold", "max_matches", "border_margin", "min_peak_mass",
                       "keep_sharpest", "verify_alignment")


class RosLogForwarder(logging.Handler):
    """Hands the package's Python log records (the TensorRT -> onnxruntime fallback, engine
    builds, the backend ``auto`` chose) to the node's ROS logger, so that they reach /rosout and
    launch's log like every other line of the node."""

    def __init__(self, ros_logger: Any) -> None:
        super().__init__(logging.INFO)
        self.ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.levelno >= logging.ERROR:
            self.ros_logger.error(text)
        elif record.levelno >= logging.WARNING:
            self.ros_logger.warning(text)
        else:
            self.ros_logger.info(text)


#: how to get going when the TensorRT backend cannot be used on this machine
NO_TENSORRT_HINT = ("without TensorRT (a machine with no NVIDIA GPU, or TensorRT/pycuda not "
                    "installed) start with backend:=onnxruntime, or with "
                    "allow_backend_fallback:=true to fall back to onnxruntime")


class StartupError(RuntimeError):
    """A parameter value the node cannot start with (the model's own problems do not stop it)."""


def qos_profile(kind: str) -> QoSProfile:
    """The QoS profile of one of the ``interface.QOS_*`` kinds."""
    if kind == api.QOS_SENSOR_DATA:
        return QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                          reliability=ReliabilityPolicy.BEST_EFFORT,
                          durability=DurabilityPolicy.VOLATILE)
    if kind == api.QOS_RELIABLE:
        return QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                          reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)
    if kind == api.QOS_LATCHED:
        return QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                          reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)
    if kind == api.QOS_SYSTEM_DEFAULT:
        return qos_profile_system_default
    raise ValueError(f"unknown QoS kind {kind!r}")


def descriptor(spec: api.ParameterSpec) -> ParameterDescriptor:
    """ParameterDescriptor of one ``ParameterSpec`` (ranges, read-only, choices in the text)."""
    text = spec.description
    if spec.choices:
        text += f" (one of: {', '.join(choice or repr(choice) for choice in spec.choices)})"
    desc = ParameterDescriptor(name=spec.name, type=_ROS_TYPES[spec.type], description=text,
                               read_only=spec.read_only)
    if spec.choices:
        desc.additional_constraints = f"one of {list(spec.choices)}"
    if spec.range is not None and spec.type == api.INTEGER:
        desc.integer_range = [IntegerRange(from_value=int(spec.range[0]),
                                           to_value=int(spec.range[1]), step=int(spec.range[2]))]
    elif spec.range is not None and spec.type == api.DOUBLE:
        desc.floating_point_range = [FloatingPointRange(
            from_value=float(spec.range[0]), to_value=float(spec.range[1]),
            step=float(spec.range[2]))]
    return desc


def model_file(params: Dict[str, Any]) -> Optional[str]:
    """The file the chosen backend loads: ``engine_path`` (TensorRT), ``onnx_path``
    (onnxruntime/TensorRT), else ``weights``; None = the bundled default model."""
    backend = params["backend"]
    if params["engine_path"] and backend in ("auto", "tensorrt"):
        return params["engine_path"]
    if params["onnx_path"] and backend in ("auto", "tensorrt", "onnxruntime"):
        return params["onnx_path"]
    return params["weights"] or None


def input_size_parameter(params: Dict[str, Any]) -> Optional[tuple]:
    """``(input_width, input_height)``, or None when both are 0; StartupError when one is."""
    if not (params["input_width"] or params["input_height"]):
        return None
    if not (params["input_width"] and params["input_height"]):
        raise StartupError("set both input_width and input_height (or leave both 0)")
    return (params["input_width"], params["input_height"])


def create_matcher(params: Dict[str, Any]) -> Any:
    """Build the Matcher from the node's read-only parameters (imported here: the torch backend
    is the only one that loads torch)."""
    from loftr_ros.matching.matcher import Matcher

    input_size = input_size_parameter(params)
    return Matcher.create(
        backend=params["backend"], weights=model_file(params), preset=params["preset"] or None,
        input_size=input_size, refinement=params["refinement"],
        threads=params["threads"] or None, engine_cache_dir=params["engine_cache_dir"] or None,
        fp16=params["fp16"], allow_fallback=params["allow_backend_fallback"])


def _encoding_text(msg: Any) -> str:
    """An Image's encoding, or a CompressedImage's format."""
    return str(msg.encoding) if isinstance(msg, Image) else f"compressed ({msg.format})"


def _stamp_tuple(stamp: Any) -> tuple:
    return (int(stamp.sec), int(stamp.nanosec))


def _reference_stamp_problem(msg: Image) -> Optional[str]:
    """Why ``msg`` cannot be the reference on account of its stamp (None: it can). Every
    matches message carries the reference stamp in the UINT32 fields ``ref_sec, ref_nanosec``."""
    if msg.header.stamp.sec < 0:
        return (f"its stamp has negative seconds ({msg.header.stamp.sec}), which the matches' "
                "UINT32 ref_sec field cannot carry")
    return None


class MatcherNode(Node):
    """The ``loftr_matcher`` node (see the module docstring)."""

    def __init__(self, matcher: Any = None, **node_kwargs: Any) -> None:
        super().__init__(api.NODE_NAME, **node_kwargs)
        self._log_forwarder = RosLogForwarder(self.get_logger())
        package_logger = logging.getLogger(api.PACKAGE)
        package_logger.addHandler(self._log_forwarder)
        package_logger.setLevel(logging.INFO)
        self._params = self._declare_static_parameters()
        input_size_parameter(self._params)  # a bad parameter value stops the start-up
        #: why no model is loaded (None once one is): missing or corrupt weights, an engine for
        #: another GPU, an unusable backend. The node then keeps running without matching.
        self.model_error: Optional[str] = None
        if matcher is None:
            matcher = self._load_matcher()
        self.matcher = matcher
        if matcher is not None:
            self._declare_dynamic_parameters()
        self.backend_name = str(matcher.backend_name) if matcher is not None else "none"
        self.model_name = str(matcher.config.name) if matcher is not None else "none"

        self.converter = ImageConverter()
        self.stats = PipelineStats()
        #: the counters at the last /diagnostics, to tell what happened since
        self._reported_counts = self.stats.snapshot()
        self.slot: NewestFrameSlot = NewestFrameSlot()
        self._lock = threading.Lock()
        self._latest_msg: Optional[Image] = None
        self.reference: Optional[Reference] = None
        self._fps = 0.0
        self._last_published = 0.0
        self.debug_images = 0

        self.matches_pub = self.create_publisher(
            PointCloud2, api.MATCHES_TOPIC,
            QoSProfile(depth=api.MATCHES_QUEUE_DEPTH, reliability=ReliabilityPolicy.RELIABLE))
        self.debug_pub = self.create_publisher(Image, api.DEBUG_IMAGE_TOPIC,
                                               qos_profile(api.QOS_RELIABLE))
        self.reference_pub = self.create_publisher(Image, api.REFERENCE_IMAGE_TOPIC,
                                                   qos_profile(api.QOS_LATCHED))
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, api.DIAGNOSTICS_TOPIC,
                                                     qos_profile(api.QOS_RELIABLE))
        self.image_sub = self._subscribe_images()
        self.stamps = StampMonitor()
        self._init_geometry_outputs()
        self.reference_srv = self.create_service(Trigger, api.SET_REFERENCE_SERVICE,
                                                 self._on_set_reference)
        self.diagnostics_timer = self.create_timer(self._params["diagnostics_period"],
                                                   self._publish_diagnostics)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="loftr_inference", daemon=True)
        self._worker.start()
        # The debug picture is drawn by its own thread, so the inference worker takes the next
        # frame at once; a picture still being drawn is replaced by the newest (never queued).
        self._debug_slot: NewestFrameSlot = NewestFrameSlot()
        self._debug_worker = threading.Thread(target=self._draw_debug, name="loftr_debug",
                                              daemon=True)
        self._debug_worker.start()
        if self.matcher is None:
            self.get_logger().error(
                f"no model loaded: {str(self.model_error).rstrip('.')}. The node keeps "
                f"running: set_reference fails and frames on {self.image_sub.topic_name} are "
                "ignored until it is restarted with working model parameters")
            return
        self.get_logger().info(
            f"ready: backend {self.matcher.runtime.description}, model {self.model_name}, "
            f"refinement {self.matcher.refinement}, image QoS "
            f"{self._params['image_qos']}, listening on {self.image_sub.topic_name}; "
            f"{self.converter.description}")

    def _load_matcher(self) -> Any:
        """The Matcher the parameters name, or None (reason in ``model_error``) when the model
        cannot be loaded. Real bugs still raise."""
        try:
            return create_matcher(self._params)
        except Exception as exc:
            problem = _startup_problem(exc)
            if problem is None or os.environ.get("LOFTR_ROS_DEBUG"):
                raise
            if self._params["backend"] == "tensorrt" and _is_backend_unavailable(exc):
                problem = f"{problem.rstrip('.')}. {NO_TENSORRT_HINT[0].upper()}" \
                    f"{NO_TENSORRT_HINT[1:]}"
            self.model_error = problem
            return None

    # -- input and geometry outputs -------------------------------------------------------------

    def _subscribe_images(self) -> Any:
        """``image`` (raw) or, with ``image_transport: compressed``, the resolved ``image`` name
        plus ``/compressed`` (a CompressedImage), as image_transport names it."""
        qos = qos_profile(self._params["image_qos"])
        if self._params["image_transport"] == api.TRANSPORT_COMPRESSED:
            topic = self.resolve_topic_name(api.IMAGE_TOPIC) + api.COMPRESSED_SUFFIX
            return self.create_subscription(CompressedImage, topic, self._on_image, qos)
        return self.create_subscription(Image, api.IMAGE_TOPIC, self._on_image, qos)

    def _init_geometry_outputs(self) -> None:
        mode = self._params["estimate"]
        self.homography_pub = None
        self.pose_pub = None
        self.camera_info_sub = None
        if mode == api.ESTIMATE_HOMOGRAPHY:
            self.homography_pub = self.create_publisher(
                Float64MultiArray, api.HOMOGRAPHY_TOPIC, qos_profile(api.QOS_RELIABLE))
        if mode == api.ESTIMATE_ESSENTIAL:
            self.pose_pub = self.create_publisher(PoseStamped, api.RELATIVE_POSE_TOPIC,
                                                  qos_profile(api.QOS_RELIABLE))
            # best effort takes camera_info from reliable and best-effort publishers alike
            self.camera_info_sub = self.create_subscription(
                CameraInfo, api.CAMERA_INFO_TOPIC, self._on_camera_info,
                qos_profile(api.QOS_SENSOR_DATA))
        #: the newest usable camera_info, and why there is none
        self._camera: Optional[CameraModel] = None
        self._camera_problem = (f"no camera_info received yet on "
                                f"{self.camera_info_sub.topic_name}"
                                if self.camera_info_sub is not None else "")
        #: the camera of the reference: the newest usable one when it was set (or, if there was
        #: none, the first that came after)
        self._reference_camera: Optional[CameraModel] = None
        self.estimates_failed = 0
        self._reported_failed = 0
        self._last_failure = ""
        self._last_inlier_ratio = -1.0
        self._estimate_seconds: List[float] = []

    def _on_camera_info(self, msg: CameraInfo) -> None:
        camera, problem = camera_model_from_info(msg)
        with self._lock:
            self._camera = camera
            self._camera_problem = problem
        if camera is None:
            self.get_logger().warning(f"no pose: {problem}",
                                      throttle_duration_sec=_LOG_THROTTLE_S)

    def _decode(self, msg: Any) -> Any:
        """The matcher's image of an Image or CompressedImage (ImageConversionError if not)."""
        if isinstance(msg, CompressedImage):
            return compressed_msg_to_matching_image(msg)
        return self.converter.to_matching_image(msg)

    def _estimate(self, result: Any, image: Any) -> FrameGeometry:
        """The ``estimate`` mode's geometry for one frame's matches; failures are counted and
        logged (throttled)."""
        mode = self._params["estimate"]
        with self._lock:
            camera, problem = self._camera, self._camera_problem
            if self._reference_camera is None:
                self._reference_camera = camera
            camera_ref = self._reference_camera
        geometry = estimate_frame_geometry(
            mode, result.keypoints0, result.keypoints1, self._params["estimate_threshold_px"],
            self._params["min_inliers"], camera_ref, camera, (image.shape[1], image.shape[0]))
        if mode == api.ESTIMATE_NONE:
            return geometry
        self._last_inlier_ratio = geometry.inlier_ratio
        self._estimate_seconds = (self._estimate_seconds + [geometry.seconds])[-50:]
        if geometry.failure:
            failure = geometry.failure
            if camera is None and problem:
                failure = f"{failure}: {problem}"
            self.estimates_failed += 1
            self._last_failure = failure
            self.get_logger().warning(f"nothing published for this frame: {failure}",
                                      throttle_duration_sec=_LOG_THROTTLE_S)
        return geometry

    def _publish_geometry(self, geometry: FrameGeometry, msg: Any, reference: Reference) -> None:
        if geometry.homography is not None and self.homography_pub is not None:
            self.homography_pub.publish(homography_msg(geometry.homography))
        if geometry.rotation is not None and self.pose_pub is not None:
            frame_id = self._params["pose_frame_id"] or reference.msg.header.frame_id
            self.pose_pub.publish(pose_msg(geometry.rotation, geometry.position, msg.header,
                                           frame_id))

    # -- parameters ---------------------------------------------------------------------------

    def _declare_static_parameters(self) -> Dict[str, Any]:
        values: Dict[str, Any] = {}
        for spec in api.PARAMETERS:
            if spec.dynamic and spec.default is api.FROM_MODEL:
                continue  # declared once the model (and so its default) is known
            value = self.declare_parameter(spec.name, spec.default, descriptor(spec)).value
            problem = spec.check(value)
            if problem:
                raise StartupError(problem)
            values[spec.name] = value
        return values

    def _declare_dynamic_parameters(self) -> None:
        for spec in api.PARAMETERS:
            if spec.dynamic and spec.default is api.FROM_MODEL:
                default = getattr(self.matcher, spec.name)
                default = float(default) if spec.type == api.DOUBLE else int(default)
                value = self.declare_parameter(spec.name, default, descriptor(spec)).value
                problem = spec.check(value)
                if problem:
                    raise StartupError(problem)
                self._params[spec.name] = value
        for name in _MATCHER_PARAMETERS:
            setattr(self.matcher, name, self._params[name])

    def _on_set_parameters(self, params: List[Any]) -> SetParametersResult:
        """Apply dynamic parameters live; refuse invalid choices (ranges are checked by rclpy)."""
        for param in params:
            spec = api.PARAMETERS_BY_NAME.get(param.name)
            if spec is None or not spec.dynamic:
                continue
            problem = spec.check(param.value)
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        for param in params:
            if param.name in _MATCHER_PARAMETERS and self.matcher is not None:
                setattr(self.matcher, param.name, param.value)
            if param.name in api.PARAMETERS_BY_NAME:
                self._params[param.name] = param.value
        return SetParametersResult(successful=True)

    # -- callbacks ----------------------------------------------------------------------------

    def _on_image(self, msg: Any) -> None:
        """Store the newest frame for the worker (replacing a pending one = one dropped frame)."""
        now = time.monotonic()
        self.stats.count_received()
        self.stamps.add(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)
        with self._lock:
            self._latest_msg = msg
        self.slot.put((msg, now))

    def _on_set_reference(self, request: Trigger.Request, response: Trigger.Response
                          ) -> Trigger.Response:
        """Make the newest received frame the reference; fail clearly when there is none."""
        if self.matcher is None:
            response.success = False
            response.message = (f"no model loaded ({self.model_error}); fix the model "
                                "parameters and restart the node")
            return response
        with self._lock:
            msg = self._latest_msg
        if msg is None:
            response.success = False
            response.message = (f"no frame received yet on {self.image_sub.topic_name}; "
                                "publish images first")
            return response
        try:
            image = self._decode(msg)
        except ImageConversionError as exc:
            response.success = False
            response.message = f"newest frame cannot be used as reference: {exc}"
            return response
        except Exception as exc:  # raised in a service callback, it would end the node's spin
            return self._reference_failed(response, exc)
        problem = _reference_stamp_problem(msg)
        if problem:
            response.success = False
            response.message = f"newest frame cannot be used as reference: {problem}"
            return response
        try:
            reference = self._set_reference(msg, image)
        except Exception as exc:
            return self._reference_failed(response, exc)
        response.success = True
        response.message = (f"reference set: stamp {reference.stamp[0]}.{reference.stamp[1]:09d}, "
                            f"{image.shape[1]}x{image.shape[0]} {_encoding_text(msg)}")
        return response

    def _reference_failed(self, response: Trigger.Response, exc: Exception
                          ) -> Trigger.Response:
        """A failed ``set_reference`` for an unexpected error, logged with its type."""
        text = f"{type(exc).__name__}: {exc}"
        self.get_logger().error(f"set_reference failed: {text}")
        response.success = False
        response.message = f"newest frame cannot be used as reference: {text}"
        return response

    def _set_reference(self, msg: Any, image: Any) -> Reference:
        reference = Reference(image=image, encoded=self.matcher.encode(image),
                              stamp=_stamp_tuple(msg.header.stamp), msg=msg,
                              set_at=time.monotonic())
        with self._lock:
            self.reference = reference
            self._reference_camera = self._camera
        self.reference_pub.publish(msg if isinstance(msg, Image) else array_to_image_msg(
            image, "bgr8" if image.ndim == 3 else "mono8", header=msg.header))
        self.get_logger().info(f"reference set: stamp {reference.stamp[0]}."
                               f"{reference.stamp[1]:09d}, {image.shape[1]}x{image.shape[0]}")
        return reference

    # -- inference worker ---------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            item = self.slot.take(timeout=0.5)
            if item is None:
                continue
            msg, received = item
            try:
                self._process(msg, received)
            except Exception as exc:  # one bad frame must not stop the node
                if not self.context.ok():
                    return  # Ctrl-C shut the context down while this frame was in flight
                self.stats.count_error()
                self.get_logger().error(f"frame failed: {type(exc).__name__}: {exc}",
                                        throttle_duration_sec=_LOG_THROTTLE_S)

    def _process(self, msg: Image, received: float) -> None:
        if self.matcher is None:
            self.get_logger().error(f"frame ignored: no model loaded ({self.model_error})",
                                    throttle_duration_sec=_LOG_THROTTLE_S)
            return
        try:
            image = self._decode(msg)
        except ImageConversionError as exc:
            self.stats.count_rejected()
            self.get_logger().warning(f"frame skipped: {exc}",
                                      throttle_duration_sec=_LOG_THROTTLE_S)
            return
        with self._lock:
            reference = self.reference
        if reference is None:
            if not self._params["auto_reference"]:
                return
            problem = _reference_stamp_problem(msg)
            if problem:
                self.stats.count_rejected()
                self.get_logger().warning(f"frame not taken as the reference: {problem}",
                                          throttle_duration_sec=_LOG_THROTTLE_S)
                return
            reference = self._set_reference(msg, image)
        # The frame that just became the reference is already encoded: match it as it is.
        frame = reference.encoded if reference.image is image else image
        result = self.matcher.match(reference.encoded, frame)
        geometry = self._estimate(result, image)
        cloud = matches_to_msg(result.keypoints0, result.keypoints1, result.scores, msg.header,
                               reference.stamp, inliers=geometry.inliers)
        self.matches_pub.publish(cloud)
        self._publish_geometry(geometry, msg, reference)
        published = time.monotonic()
        timing = FrameTiming(received=received, published=published,
                             inference=result.timings.get("inference", 0.0) * 1e-3,
                             matcher=result.timings.get("total", 0.0) * 1e-3)
        self.stats.add_frame(timing, len(result.scores))
        if self._last_published:
            interval = published - self._last_published
            self._fps = 0.8 * self._fps + 0.2 / interval if self._fps else 1.0 / interval
        self._last_published = published
        if self._params["publish_debug_image"] and self.debug_pub.get_subscription_count() > 0:
            self._debug_slot.put((reference, image, result, msg, timing, geometry))

    def _draw_debug(self) -> None:
        """Debug thread: draw and publish the newest frame's picture (see __init__)."""
        while not self._stop.is_set():
            job = self._debug_slot.take(timeout=0.5)
            if job is None:
                continue
            try:
                self._publish_debug(*job)
            except Exception as exc:  # a failed picture must not stop the pictures after it
                if not self.context.ok():
                    return
                self.get_logger().error(f"debug image failed: {type(exc).__name__}: {exc}",
                                        throttle_duration_sec=_LOG_THROTTLE_S)

    def _publish_debug(self, reference: Reference, image: Any, result: Any, msg: Image,
                       timing: FrameTiming, geometry: Optional[FrameGeometry] = None) -> None:
        from loftr_ros.matching.drawing import draw_matches, draw_reference_outline

        lines = [f"matches {len(result.scores)}  backend {self.backend_name}",
                 f"{self._fps:.1f} FPS  latency {timing.latency * 1e3:.0f} ms  "
                 f"inference {timing.inference * 1e3:.0f} ms"]
        estimated = geometry is not None and self._params["estimate"] != api.ESTIMATE_NONE
        if estimated:
            lines.append(f"{self._params['estimate']}: {int(geometry.inliers.sum())} inliers "
                         f"({100 * geometry.inlier_ratio:.0f}%)"
                         + ("" if not geometry.failure else "  FAILED"))
        if geometry is not None and geometry.homography is not None:
            height, width = reference.image.shape[:2]
            image = draw_reference_outline(image, (width, height), geometry.homography)
        canvas = draw_matches(reference.image, image, result.keypoints0, result.keypoints1,
                              result.scores, text_lines=lines,
                              max_lines=self._params["debug_max_lines"],
                              max_side=api.DEBUG_IMAGE_MAX_SIDE,
                              inliers=geometry.inliers if estimated else None)
        self.debug_pub.publish(array_to_image_msg(canvas, "bgr8", header=msg.header))
        self.debug_images += 1

    # -- diagnostics --------------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        """About once per ``diagnostics_period``: rate, latency, drops, errors, backend, model."""
        window = self.stats.window()
        rate = window["rate"]
        counts = self.stats.snapshot()
        with self._lock:
            reference = self.reference
        age = time.monotonic() - reference.set_at if reference else -1.0
        values = {
            api.DIAG_BACKEND: self.backend_name, api.DIAG_MODEL: self.model_name,
            api.DIAG_RATE: f"{rate:.2f}", api.DIAG_LATENCY: f"{window['latency'] * 1e3:.1f}",
            api.DIAG_INFERENCE: f"{window['inference'] * 1e3:.1f}",
            api.DIAG_MATCHER: f"{window['matcher'] * 1e3:.1f}",
            api.DIAG_RECEIVED: str(counts["received"]),
            api.DIAG_PROCESSED: str(counts["processed"]),
            api.DIAG_DROPPED: str(self.slot.dropped),
            api.DIAG_REJECTED: str(counts["rejected"]), api.DIAG_ERRORS: str(counts["errors"]),
            api.DIAG_REFERENCE_AGE: f"{age:.1f}", api.DIAG_MATCHES: str(counts["last_matches"]),
            api.DIAG_DEBUG_IMAGES: str(self.debug_images),
            api.DIAG_TORCH_LOADED: str("torch" in sys.modules).lower(),
        }
        values.update(self._geometry_diagnostics())
        stamps = self.stamps.report()
        values.update({api.DIAG_STAMP_RATE: f"{stamps.stamp_rate:.2f}",
                       api.DIAG_ARRIVAL_RATE: f"{stamps.arrival_rate:.2f}",
                       api.DIAG_STAMP_GAPS: str(stamps.gaps)})
        status = DiagnosticStatus(name=api.DIAGNOSTIC_NAME, hardware_id=api.DIAGNOSTIC_HARDWARE_ID)
        status.level, status.message = self._health(counts, reference is not None, rate)
        status.level, status.message = self._more_health(status.level, status.message, stamps)
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        array_msg = DiagnosticArray(status=[status])
        array_msg.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array_msg)

    def _geometry_diagnostics(self) -> Dict[str, str]:
        seconds = self._estimate_seconds
        return {api.DIAG_ESTIMATE: self._params["estimate"],
                api.DIAG_INLIER_RATIO: (f"{self._last_inlier_ratio:.2f}"
                                        if self._last_inlier_ratio >= 0 else "n/a"),
                api.DIAG_ESTIMATE_FAILED: str(self.estimates_failed),
                api.DIAG_ESTIMATE_TIME: (f"{1e3 * sum(seconds) / len(seconds):.2f}"
                                         if seconds else "n/a")}

    def _more_health(self, level: bytes, message: str, stamps: Any) -> Tuple[bytes, str]:
        """Failed estimates and frames lost before the node turn an OK report into a WARN."""
        failed, self._reported_failed = (self.estimates_failed - self._reported_failed,
                                         self.estimates_failed)
        if level != DiagnosticStatus.OK:
            return level, message
        if failed:
            return DiagnosticStatus.WARN, (f"{failed} estimates failed since the last report: "
                                           f"{self._last_failure}")
        if stamps.frames_lost:
            return DiagnosticStatus.WARN, stamps.describe()
        return level, message

    def _health(self, counts: Dict[str, Any], has_reference: bool, rate: float
                ) -> Tuple[bytes, str]:
        """The /diagnostics level and message, from the counters now and at the last report."""
        previous, self._reported_counts = self._reported_counts, counts
        processed, rejected, errors = (counts[key] - previous[key]
                                       for key in ("processed", "rejected", "errors"))
        if self.matcher is None:
            return DiagnosticStatus.ERROR, f"no model loaded: {self.model_error}"
        if not has_reference:
            return DiagnosticStatus.WARN, "no reference frame yet"
        if counts["errors"] and counts["processed"] == 0:
            return DiagnosticStatus.ERROR, "every frame failed so far"
        if rejected or errors:
            return DiagnosticStatus.WARN, (
                f"since the last report {processed} frames matched, {rejected} rejected, "
                f"{errors} failed (see the log)")
        if counts["processed"] and counts["last_matches"] == 0:
            return DiagnosticStatus.WARN, (
                f"matching at {rate:.1f} Hz but the last frame had no matches with the "
                "reference")
        return DiagnosticStatus.OK, f"matching at {rate:.1f} Hz"

    def shutdown(self) -> None:
        """Stop the worker and release the model (safe to call twice)."""
        self._stop.set()
        self.slot.close()
        self._debug_slot.close()
        for thread in (self._worker, self._debug_worker):
            if thread.is_alive():
                thread.join(timeout=5.0)
        close = getattr(self.matcher, "close", None) if self.matcher is not None else None
        if close is not None:
            close()
        logging.getLogger(api.PACKAGE).removeHandler(self._log_forwarder)


def _is_backend_unavailable(exc: BaseException) -> bool:
    try:
        from loftr_ros.runtime.base import BackendUnavailableError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, BackendUnavailableError)


def _startup_problem(exc: BaseException) -> Optional[str]:
    """One-line text for errors that mean "cannot start"; None for real bugs."""
    if isinstance(exc, (StartupError, ParameterException, InvalidParameterTypeException,
                        InvalidParameterValueException, FileNotFoundError, ValueError, KeyError,
                        ImportError, OSError)):
        return f"{type(exc).__name__}: {exc}"
    try:
        from loftr_ros.runtime.base import LoftrRuntimeError
    except ImportError:  # pragma: no cover
        return None
    if isinstance(exc, LoftrRuntimeError):
        return f"{type(exc).__name__}: {exc}"
    return None


def main(args: Optional[List[str]] = None) -> int:
    """Entry point of ``matcher_node``. Exit 0 on Ctrl-C / SIGTERM, 2 when a parameter value
    stops the start-up. A model that cannot be loaded does not: the node then runs without one
    (``MatcherNode.model_error``)."""
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    from loftr_ros.ros.signals import ignore_stop_signals

    try:
        rclpy.init(args=args)
    except Exception as exc:  # malformed --ros-args and the like
        print(f"[{api.NODE_NAME}] cannot start: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    node = None
    try:
        # made before the model loads: a Ctrl-C during an executor's construction leaves a
        # half-built executor whose __del__ prints a traceback
        executor = SingleThreadedExecutor()
        try:
            node = MatcherNode()
        except Exception as exc:
            problem = _startup_problem(exc) or f"{type(exc).__name__}: {exc}"
            if os.environ.get("LOFTR_ROS_DEBUG"):
                raise
            print(f"[{api.NODE_NAME}] cannot start: {problem}", file=sys.stderr, flush=True)
            return 2
        rclpy.spin(node, executor)
    except (KeyboardInterrupt, ExternalShutdownException):
        ignore_stop_signals()
    finally:
        ignore_stop_signals()  # a second Ctrl-C must not cut the clean-up short
        if node is not None:
            node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
        ignore_stop_signals()  # rclpy's shutdown puts back the handlers it found at start
    return 0


if __name__ == "__main__":
    sys.exit(main())
