"""Unit tests of single modules, with real files and no processes."""
