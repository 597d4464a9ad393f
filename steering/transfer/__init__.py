"""Target side: maps fitted on benign anchors only, transport and calibration, category mixing, the native baseline."""
