"""Yellowstone plugin for tfserving."""
