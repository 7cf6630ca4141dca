"""Lab tests: the Docker lab's configuration files, and the native lab with Prometheus."""
