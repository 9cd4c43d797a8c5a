"""Yellowstone plugin for torchserve."""
