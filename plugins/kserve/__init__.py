"""Yellowstone plugin for kserve."""
