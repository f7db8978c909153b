"""Default templates, shipped inside the wheel as the package `gcpfargate.templates`."""
