"""mediatable."""
