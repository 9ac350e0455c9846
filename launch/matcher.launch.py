"""Start loftr_matcher (and optionally image_player instead of a camera).

    ros2 launch loftr_ros matcher.launch.py camera_topic:=/camera/image_raw
    ros2 launch loftr_ros matcher.launch.py params_file:=<share>/config/jetson.yaml
    ros2 launch loftr_ros matcher.launch.py backend:=onnxruntime refinement:=fine threshold:=0.3
    ros2 launch loftr_ros matcher.launch.py use_player:=true player_path:=/path/to/frames_or.mp4
    ros2 service call /loftr_matcher/set_reference std_srvs/srv/Trigger

Arguments: camera_topic, params_file, namespace, use_player, player_path, player_rate,
fastdds_profile, and one per node parameter (loftr_ros.ros.interface.PARAMETERS, e.g. backend,
weights, refinement, threshold): empty = keep the params file's value, else it overrides it.
Launch arguments are not scoped: when a parent launch file that has arguments of these names
(``threads``, ``weights``, ...) includes this one, wrap the include in
``GroupAction(scoped=True)`` with the values meant for this node.

The nodes get ``FASTDDS_DEFAULT_PROFILES_FILE`` = ``fastdds_profile`` (default: the variable as
set where launch runs, else the package's config/fastdds_large_frames.xml, a 16 MiB shared-memory
segment): with Fast DDS's defaults, 640x480 bgr8 frames do not fit its 512 KB segment and many
are lost in transport (README, "Frames lost in transport"). Empty = Fast DDS's defaults.
No ``emulate_tty``: the node's log lines stay free of colour codes when redirected or logged.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from loftr_ros.ros import interface as api

PACKAGE = "loftr_ros"
FASTDDS_PROFILE = "fastdds_large_frames.xml"


def _nodes(context, *args, **kwargs):
    """Build the nodes once the arguments are known (parameter overrides are optional)."""
    camera_topic = LaunchConfiguration("camera_topic").perform(context)
    params_file = LaunchConfiguration("params_file").perform(context)
    namespace = LaunchConfiguration("namespace").perform(context)
    use_player = LaunchConfiguration("use_player").perform(context).lower() in ("true", "1")
    player_path = LaunchConfiguration("player_path").perform(context)
    player_rate = float(LaunchConfiguration("player_rate").perform(context))
    fastdds_profile = LaunchConfiguration("fastdds_profile").perform(context)
    environment = {"FASTDDS_DEFAULT_PROFILES_FILE": fastdds_profile} if fastdds_profile else {}

    parameters = [params_file] if params_file else []
    overrides = {}
    for spec in api.PARAMETERS:
        text = LaunchConfiguration(spec.name).perform(context)
        if text != "":
            overrides[spec.name] = spec.from_text(text)  # ValueError names the parameter
    if overrides:
        parameters.append(overrides)
    nodes = [Node(package=PACKAGE, executable="matcher_node", name="loftr_matcher",
                  namespace=namespace, parameters=parameters,
                  remappings=[("image", camera_topic)], output="screen",
                  additional_env=environment)]
    if use_player:
        if not player_path:
            raise RuntimeError("use_player:=true needs player_path:=<folder of images or video>")
        nodes.append(Node(package=PACKAGE, executable="image_player", name="image_player",
                          namespace=namespace,
                          parameters=[{"path": player_path, "rate": player_rate, "loop": True}],
                          remappings=[("image", camera_topic)], output="screen",
                          additional_env=environment))
    return nodes


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    default_params = os.path.join(share, "config", "matcher.yaml")
    default_profile = os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE") or os.path.join(
        share, "config", FASTDDS_PROFILE)
    return LaunchDescription([
        DeclareLaunchArgument("camera_topic", default_value="/camera/image_raw",
                              description="sensor_msgs/Image topic to match (remaps `image`)"),
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="parameter file (config/matcher.yaml, "
                                          "config/jetson.yaml or your own)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the nodes"),
        DeclareLaunchArgument("use_player", default_value="false",
                              description="start image_player instead of relying on a camera"),
        DeclareLaunchArgument("player_path", default_value="",
                              description="folder of images or a video file for image_player"),
        DeclareLaunchArgument("player_rate", default_value="10.0",
                              description="image_player frames per second"),
        DeclareLaunchArgument("fastdds_profile", default_value=default_profile,
                              description="Fast DDS XML profile for the nodes "
                                          "(FASTDDS_DEFAULT_PROFILES_FILE); default: the "
                                          "variable where launch runs, else the package's "
                                          "large-frame profile; empty = Fast DDS's defaults"),
    ] + [DeclareLaunchArgument(spec.name, default_value="",
                               description=f"node parameter {spec.name} (empty = the params "
                                           f"file's): {spec.description}")
         for spec in api.PARAMETERS] + [OpaqueFunction(function=_nodes)])
