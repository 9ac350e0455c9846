"""Everything that imports rclpy or ROS messages: the node, its interface table, image conversion,
the image player and the demo."""
