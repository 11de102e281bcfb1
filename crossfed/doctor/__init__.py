"""`crossfed doctor`: read-only diagnosis of a federation from what the cloud holds."""
